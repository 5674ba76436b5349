"""Activation memory of one micro-batch, per decoder layer, after Korthikanti et al. (2022).

"Reducing Activation Recomputation in Large Transformer Models" counts, per layer, every
tensor the backward pass needs: ``s b h (34 + 5 a s / h)`` bytes for a GPT layer in 16-bit,
``/ t`` with tensor + sequence parallelism, ``34 s b h / t`` when the attention core is
recomputed ("selective"), ``2 s b h / t`` when only the layer input is kept ("full").
The 34 is: 11 for attention (QKV input 2, Q and K 4, V 2, output-projection input 2,
dropout mask 1), 19 for a 4h GeLU MLP, 4 for two LayerNorm inputs.

r1mega's models differ from that GPT, so the same bookkeeping is redone term by term, in
tensor *elements per token* (times 2 bytes in bf16, 1 for FP8 GEMM inputs):

* no dropout: the masks (1 + 1) are gone;
* flash attention keeps Q, K, V and the output, never the ``a s^2`` score matrix (an
  unfused core keeps the softmax, ``a s`` per token, unless ``core_attn`` is recomputed);
* GQA: K and V have ``kv_heads`` heads; MLA: Q and K have ``d_nope + d_rope`` per head, V
  ``d_v``, plus the compressed query/key-value latents and their norms;
* SwiGLU as the provider builds it (Megatron's unfused GLU): ``5 f`` per token, see
  :func:`_swiglu` (``2 f + f`` with ``fused_swiglu``);
* MoE: router logits and probabilities (fp32), each token's ``k`` copies of the expert input,
  fc1 output, activation output and expert output, and the shared expert like a small MLP.

Sharding: with sequence parallelism the ``h``-sized tensors are split over TP ranks (the
sequence dimension); head- and ffn-split tensors are always split over TP; context
parallelism splits the sequence; each expert rank sees ``k`` copies of its own tokens on
average (times ``moe_imbalance`` for the busiest rank).

Recompute: ``selective`` drops what Megatron's ``recompute_modules`` recompute
(``layernorm``: norm outputs; ``core_attn``: the softmax; ``mla_up_proj``: Q, K, V;
``mlp``/``moe``/``shared_experts``: the whole block's internals; ``moe_act``: the expert
activation output). ``full`` keeps only the layer input ``h``, plus one layer's worth of
activations rebuilt during its backward (added once per stage by the estimate).
"""

from __future__ import annotations

from r1mega.models.config import ModelConfig
from r1mega.models.provider import padded_vocab_size
from r1mega.parallel.dims import ParallelDims
from r1mega.plan.config import PlanConfig


class _Terms:
    """Accumulates bytes per token in two pools: split by sequence parallelism, split by TP."""

    def __init__(self, plan: PlanConfig, modules: set[str]):
        self.act = 4.0 if plan.dtype == "fp32" else 2.0
        self.gemm = 1.0 if plan.fp8 else self.act
        self.modules = modules
        self.fused_swiglu = plan.fused_swiglu
        self.seq = 0.0  # h-sized tensors: 1/tp only under sequence parallelism
        self.head = 0.0  # head/ffn-split tensors: always 1/tp

    def skip(self, module: str) -> bool:
        return module in self.modules


def _recomputed(plan: PlanConfig) -> set[str]:
    return set(plan.recompute_modules) if plan.recompute == "selective" else set()


def _norms(t: _Terms, h: int) -> None:
    t.seq += 2 * h * t.act  # the two RMSNorm inputs (the residual stream)
    if not t.skip("layernorm"):
        t.seq += 2 * h * t.gemm  # their outputs, the inputs of the next GEMMs


def _attention(t: _Terms, m: ModelConfig, plan: PlanConfig) -> None:
    a = m.num_attention_heads
    if m.multi_latent_attention:
        q_lat = m.q_lora_rank or 0
        t.seq += (q_lat + m.kv_lora_rank + m.qk_pos_emb_head_dim) * t.act  # latents (norm inputs)
        t.seq += (q_lat + m.kv_lora_rank) * t.gemm  # normed latents (up-projection inputs)
        qk, v = m.qk_head_dim + m.qk_pos_emb_head_dim, m.v_head_dim
        if not t.skip("mla_up_proj"):
            t.head += a * (2 * qk + v) * t.act  # Q, K, V
        t.head += a * v * t.act  # attention output (output-projection input)
    else:
        d, kv = m.head_dim, m.kv_heads
        t.head += (a + 2 * kv) * d * t.act + a * d * t.act  # Q, K, V and the output
        if plan.spec == "local":
            t.head += 2 * (a - kv) * d * t.act  # keys/values repeated to every query head
    if plan.spec == "local":
        t.head += a * (m.v_head_dim if m.multi_latent_attention else m.head_dim) * t.act  # output copy
    if not plan.flash_attention and not t.skip("core_attn"):
        t.head += a * (plan.seq_length / plan.parallel.cp) * t.act  # softmax probabilities


def _mlp(t: _Terms, f: int) -> None:
    if not t.skip("mlp"):
        t.head += _swiglu(t, f, recompute_act=False)


def _swiglu(t: _Terms, f: float, recompute_act: bool) -> float:
    """Bytes per token of a SwiGLU block's internals (its input is counted with the norms).

    Megatron's unfused GLU (the provider's default) keeps the fc1 output (2f: silu's input is
    a view of it), silu(gate) (f), ``up + glu_linear_offset`` (f, a new tensor even for a zero
    offset) and the product (f, the fc2 input): 5f. The fused bias-SwiGLU keeps 2f + f.
    Recomputing the activation (``moe_act``) keeps only the fc1 output."""
    if recompute_act:
        return 2 * f * t.act
    if t.fused_swiglu:
        return 2 * f * t.act + f * t.gemm
    return 4 * f * t.act + f * t.gemm


def _moe(t: _Terms, m: ModelConfig, plan: PlanConfig, dims: ParallelDims) -> None:
    h, k = m.hidden_size, m.moe_router_topk
    t.seq += 2 * m.num_experts * 4.0  # router logits and probabilities, fp32
    if m.moe_shared_expert_intermediate_size and not t.skip("shared_experts"):
        t.head += _swiglu(t, m.moe_shared_expert_intermediate_size, recompute_act=False)
    if t.skip("moe"):
        return
    copies = k * dims.etp * plan.moe_imbalance  # token copies an expert rank sees per token
    f_e = m.moe_ffn_hidden_size / dims.etp
    per_copy = h * t.gemm + h * t.act + _swiglu(t, f_e, recompute_act=t.skip("moe_act"))  # input, output
    t.seq += copies * per_copy  # expert tokens follow the (SP-sharded) tokens they came from


def layer_bytes(m: ModelConfig, plan: PlanConfig, dims: ParallelDims, moe: bool, modules: set[str] | None = None) -> float:
    """Bytes one decoder layer keeps for the backward of one micro-batch (no full recompute)."""
    t = _Terms(plan, _recomputed(plan) if modules is None else modules)
    _norms(t, m.hidden_size)
    _attention(t, m, plan)
    if moe:
        _moe(t, m, plan, dims)
    else:
        _mlp(t, m.ffn_hidden_size)
    tokens = plan.seq_length * plan.micro_batch_size / dims.cp
    sp = dims.tp if dims.sequence_parallel else 1
    return tokens * (t.seq / sp + t.head / dims.tp)


def layer_input_bytes(m: ModelConfig, plan: PlanConfig, dims: ParallelDims) -> float:
    """What full recompute keeps per layer and micro-batch: the layer input."""
    tokens = plan.seq_length * plan.micro_batch_size / dims.cp
    sp = dims.tp if dims.sequence_parallel else 1
    return tokens * m.hidden_size * (4.0 if plan.dtype == "fp32" else 2.0) / sp


def logits_bytes(m: ModelConfig, plan: PlanConfig, dims: ParallelDims) -> float:
    """Output-layer logits of one micro-batch on the last stage (main head + MTP heads)."""
    tokens = plan.seq_length * plan.micro_batch_size / dims.cp
    vocab = padded_vocab_size(m.vocab_size, dims.tp) / dims.tp
    heads = 1 + (m.mtp_num_layers or 0)
    return tokens * vocab * plan.logits_bytes * heads
