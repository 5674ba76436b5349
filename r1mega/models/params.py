"""Analytic parameter counts of a :class:`~r1mega.models.config.ModelConfig`.

Counting by formula instead of by building the model has two uses: the preflight planner
(``r1mega.plan``) needs the size of every *kind* of parameter (attention, dense MLP, routed
experts, embeddings) to shard each by the parallel dimension that splits it, and tests can
check the architecture YAMLs against published sizes (DeepSeek-V3: 671B total, 37B active).

The counts follow Megatron-Core's modules exactly (the provider builds these):

* attention, standard (MHA/GQA): a fused QKV projection ``h x (a + 2 kv) d`` (+ bias for
  Qwen2), the output projection ``a d x h``, the input RMSNorm, and for Qwen3 the per-head
  query and key RMSNorms (``2 d``);
* attention, MLA: the query down projection ``h x q_lora`` and its RMSNorm (or one plain query
  projection when ``q_lora_rank`` is None), the query up projection
  ``q_lora x a (d_nope + d_rope)``, the key/value down projection ``h x (kv_lora + d_rope)``
  (the rope part is the shared key), its RMSNorm, the key/value up projection
  ``kv_lora x a (d_nope + d_v)`` and the output projection ``a d_v x h``;
* MLP: SwiGLU, ``3 h f`` (gate, up, down), plus the pre-MLP RMSNorm;
* MoE layer: a router ``E x h``, ``E`` experts of ``3 h f_e``, the shared expert ``3 h f_s``;
* multi-token prediction (DeepSeek-V3): per MTP layer two RMSNorms, a ``2h x h`` projection,
  one transformer layer and a final RMSNorm; embedding and output head are shared.

"Active" is what one token touches in a forward pass: everything except the routed experts
it is not sent to (DeepSeek counts the embedding and output layer in its 37B, and so do we).
MTP is reported separately and left out of ``total`` and ``active``, as in the paper.
"""

from __future__ import annotations

from r1mega.models.config import ModelConfig


def attention_params(m: ModelConfig) -> dict[str, int]:
    """Attention parameters of one layer, split into ``tp_split`` and ``replicated`` parts.

    Under tensor parallelism Megatron splits the up/QKV/output projections by heads; MLA's
    down projections (and every norm) are duplicated on each TP rank.
    """
    h, a = m.hidden_size, m.num_attention_heads
    norm = h  # input RMSNorm
    if not m.multi_latent_attention:
        d, kv = m.head_dim, m.kv_heads
        qkv = h * (a + 2 * kv) * d + ((a + 2 * kv) * d if m.add_qkv_bias else 0)
        qk_norms = 2 * d if m.qk_layernorm else 0
        return {"tp_split": qkv + a * d * h, "replicated": norm + qk_norms}
    qk = m.qk_head_dim + m.qk_pos_emb_head_dim
    if m.q_lora_rank:
        q_rep = h * m.q_lora_rank + m.q_lora_rank  # down projection + its RMSNorm
        q_split = m.q_lora_rank * a * qk
    else:
        q_rep, q_split = 0, h * a * qk
    kv_rep = h * (m.kv_lora_rank + m.qk_pos_emb_head_dim) + m.kv_lora_rank
    kv_split = m.kv_lora_rank * a * (m.qk_head_dim + m.v_head_dim)
    out = a * m.v_head_dim * h
    return {"tp_split": q_split + kv_split + out, "replicated": q_rep + kv_rep + norm}


def dense_mlp_params(m: ModelConfig) -> int:
    """SwiGLU MLP of a dense layer (TP-split), without its norm."""
    return 3 * m.hidden_size * m.ffn_hidden_size


def moe_params(m: ModelConfig) -> dict[str, int]:
    """One MoE layer's MLP: router (replicated), routed experts, shared expert (TP-split)."""
    if not m.is_moe:
        return {"router": 0, "experts": 0, "expert": 0, "shared": 0}
    expert = 3 * m.hidden_size * m.moe_ffn_hidden_size
    shared = 3 * m.hidden_size * (m.moe_shared_expert_intermediate_size or 0)
    return {
        "router": m.num_experts * m.hidden_size,
        "experts": m.num_experts * expert,
        "expert": expert,
        "shared": shared,
    }


def layer_counts(m: ModelConfig) -> tuple[int, int]:
    """(dense layers, MoE layers) of the main decoder."""
    if not m.is_moe:
        return m.num_layers, 0
    return m.first_k_dense_layers, m.num_layers - m.first_k_dense_layers


def layer_params(m: ModelConfig, moe: bool) -> int:
    """All parameters of one decoder layer (dense or MoE), both norms included."""
    attn = attention_params(m)
    norms = m.hidden_size  # pre-MLP RMSNorm (the input norm is in attention_params)
    if not moe:
        return attn["tp_split"] + attn["replicated"] + norms + dense_mlp_params(m)
    p = moe_params(m)
    return attn["tp_split"] + attn["replicated"] + norms + p["router"] + p["experts"] + p["shared"]


def mtp_params(m: ModelConfig) -> int:
    """Multi-token-prediction layers (their own layer + projection + norms, heads shared)."""
    if not m.mtp_num_layers:
        return 0
    h = m.hidden_size
    per = 2 * h + 2 * h * h + layer_params(m, moe=m.is_moe) + h
    return m.mtp_num_layers * per


def count_parameters(model: ModelConfig) -> dict[str, int]:
    """Parameter counts by kind; ``total`` and ``active`` (per token) include the embeddings.

    Keys: total, active, embedding, output (0 when tied), final_norm, dense_layer, moe_layer,
    moe_experts (routed experts of all MoE layers), mtp, total_with_mtp.
    """
    m = model
    n_dense, n_moe = layer_counts(m)
    embedding = m.vocab_size * m.hidden_size
    output = 0 if m.tie_embeddings else embedding
    dense_layer = layer_params(m, moe=False)
    moe_layer = layer_params(m, moe=True) if n_moe else 0
    final_norm = m.hidden_size
    total = embedding + output + final_norm + n_dense * dense_layer + n_moe * moe_layer
    p = moe_params(m)
    inactive = n_moe * (m.num_experts - m.moe_router_topk) * p["expert"] if n_moe else 0
    mtp = mtp_params(m)
    return {
        "total": total,
        "active": total - inactive,
        "embedding": embedding,
        "output": output,
        "final_norm": final_norm,
        "dense_layer": dense_layer,
        "moe_layer": moe_layer,
        "moe_experts": n_moe * p["experts"],
        "mtp": mtp,
        "total_with_mtp": total + mtp,
    }
