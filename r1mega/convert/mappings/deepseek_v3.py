"""DeepSeek-V3 / R1: Multi-head Latent Attention, sigmoid-routed MoE with a shared expert.

Per layer ``L`` (HF ``model.layers.L.``, Megatron ``decoder.layers.L.``):

=============================================  =================================  ===========
Megatron (local spec; TE name in brackets)      Hugging Face                       TP split
=============================================  =================================  ===========
input_layernorm.weight                          input_layernorm.weight             replicated
self_attention.linear_q_down_proj.weight        self_attn.q_a_proj.weight          column [TE: replicated]
self_attention.q_layernorm.weight               self_attn.q_a_layernorm.weight     replicated
  [self_attention.linear_q_up_proj.layer_norm_weight]
self_attention.linear_q_up_proj.weight          self_attn.q_b_proj.weight          column
self_attention.linear_q_proj.weight (no q LoRA) self_attn.q_proj.weight            column
self_attention.linear_kv_down_proj.weight       self_attn.kv_a_proj_with_mqa.weight column [TE: replicated]
self_attention.kv_layernorm.weight              self_attn.kv_a_layernorm.weight    replicated
  [self_attention.linear_kv_up_proj.layer_norm_weight]
self_attention.linear_kv_up_proj.weight         self_attn.kv_b_proj.weight         column
self_attention.linear_proj.weight               self_attn.o_proj.weight            row
dense layers (L < first_k_dense_replace): the dense MLP of ``base.dense_mlp_entries``
MoE layers: pre_mlp_layernorm.weight <- post_attention_layernorm.weight, then
  mlp.router.weight                             mlp.gate.weight                    replicated
  mlp.router.expert_bias                        mlp.gate.e_score_correction_bias   replicated
  mlp.experts.local_experts.{e}.linear_fc1      mlp.experts.{E}.{gate,up}_proj     gate_up (expert TP)
    [TE grouped GEMM: mlp.experts.linear_fc1.weight{e}]
  mlp.experts.local_experts.{e}.linear_fc2      mlp.experts.{E}.down_proj          row (expert TP)
  mlp.shared_experts.linear_fc{1,2}.weight      mlp.shared_experts.*_proj          gate_up / row
=============================================  =================================  ===========

``e`` is the expert's index on its expert-parallel rank, ``E = ep_rank * experts_per_rank + e``.
The local spec's TP split of the two down projections is Megatron's ColumnParallelLinear
(it gathers right after); TE builds them as duplicated ``TELinear``. Both checkpoint the same
global tensor, so the layouts load into each other.

RoPE layout. DeepSeek stores the rotary rows of ``q_b_proj`` and ``kv_a_proj_with_mqa`` in
*interleaved* pair order (pairs ``(x0, x1), (x2, x3), ...``); transformers applies them with
``apply_rotary_pos_emb_interleave`` when ``rope_interleave`` is true (the default, and what
the official checkpoints need). Megatron's MLA rope (``_apply_rotary_pos_emb_bshd`` with
``multi_latent_attention=True``) de-interleaves ``x[0::2], x[1::2]`` first, then rotates
half -- the same rotation on the same weights, so the weights copy unchanged (verified in
tests/convert by logits parity). A checkpoint with ``rope_interleave: false`` stores those rows
in rotate-half order; :class:`RopeInterleave` then permutes them on import and back on export.

Multi-token prediction (``num_nextn_predict_layers``): HF stores MTP layer ``k`` as
``model.layers.{num_layers + k}`` (``enorm``, ``hnorm``, ``eh_proj``, ``shared_head.norm``, a
full decoder layer, and copies of the embedding and output head). Megatron's
``mtp.layers.{k}`` holds ``enorm``, ``hnorm``, ``eh_proj`` (column-parallel, input
``cat[enorm(embedding), hnorm(hidden)]`` in the order HF uses), ``final_layernorm`` and
``transformer_layer`` (the spec of the last decoder layer: MoE for DeepSeek-V3); embedding and
head are shared with the main model. So the HF ``embed_tokens`` / ``shared_head.head`` copies
are ``export_copy`` entries (written from the main tensors; on import only compared with
them), and on a last pipeline stage without the first the MTP's embedding copy is a ``tied``
entry filled from ``model.embed_tokens``. The entries are produced only when the Megatron model
has MTP layers (``MappingOptions.include_mtp``); HF MTP layers beyond the model's are skipped
(:func:`mtp_hf_prefixes`).
"""

from __future__ import annotations

import warnings

from r1mega.config.errors import InputError
from r1mega.convert.mappings.base import (
    COPY,
    Entry,
    LayerNames,
    MappingOptions,
    RopeInterleave,
    dense_mlp_entries,
    embedding_and_head_entries,
    moe_entries,
)
from r1mega.convert.mappings.hf_config import HFConfig, common_fields, common_hf, read_rope, rope_fields
from r1mega.models.config import ModelConfig

MODEL_TYPE = "deepseek_v3"
ARCHITECTURE = "DeepseekV3ForCausalLM"


def _rope_merge(cfg: ModelConfig, block: int, start: int):
    if cfg.extra.get("rope_interleave", True):
        return COPY
    return RopeInterleave(block, start, cfg.qk_pos_emb_head_dim)


def attention_entries(cfg: ModelConfig, names: LayerNames, hf: str, layer, owner: str) -> list[Entry]:
    te = names.opts.spec == "te"
    down_tp = "replicated" if te else "column"
    kw = dict(layer=layer, owner=owner)
    q_merge = _rope_merge(cfg, cfg.qk_head_dim + cfg.qk_pos_emb_head_dim, cfg.qk_head_dim)
    out = [Entry(names("input_layernorm.weight"), (f"{hf}.input_layernorm.weight",), **kw)]
    if cfg.q_lora_rank:
        q_norm = "linear_q_up_proj.layer_norm_weight" if te else "q_layernorm.weight"
        out += [
            Entry(names("self_attention.linear_q_down_proj.weight"), (f"{hf}.self_attn.q_a_proj.weight",),
                  tp=down_tp, fp8=True, **kw),
            Entry(names(f"self_attention.{q_norm}"), (f"{hf}.self_attn.q_a_layernorm.weight",), **kw),
            Entry(names("self_attention.linear_q_up_proj.weight"), (f"{hf}.self_attn.q_b_proj.weight",),
                  q_merge, "column", fp8=True, **kw),
        ]
    else:
        out.append(Entry(names("self_attention.linear_q_proj.weight"), (f"{hf}.self_attn.q_proj.weight",),
                         q_merge, "column", fp8=True, **kw))
    kv_norm = "linear_kv_up_proj.layer_norm_weight" if te else "kv_layernorm.weight"
    kv_merge = _rope_merge(cfg, cfg.kv_lora_rank + cfg.qk_pos_emb_head_dim, cfg.kv_lora_rank)
    out += [
        Entry(names("self_attention.linear_kv_down_proj.weight"), (f"{hf}.self_attn.kv_a_proj_with_mqa.weight",),
              kv_merge, down_tp, fp8=True, **kw),
        Entry(names(f"self_attention.{kv_norm}"), (f"{hf}.self_attn.kv_a_layernorm.weight",), **kw),
        Entry(names("self_attention.linear_kv_up_proj.weight"), (f"{hf}.self_attn.kv_b_proj.weight",),
              tp="column", fp8=True, **kw),
        Entry(names("self_attention.linear_proj.weight"), (f"{hf}.self_attn.o_proj.weight",), tp="row",
              fp8=True, **kw),
    ]
    return out


def layer_entries(cfg: ModelConfig, names: LayerNames, hf: str, layer, owner: str, moe: bool) -> list[Entry]:
    out = attention_entries(cfg, names, hf, layer, owner)
    norm_hf = f"{hf}.post_attention_layernorm.weight"
    if not moe:
        return out + dense_mlp_entries(names, f"{hf}.mlp", layer, owner, norm_hf, fused_norm=names.opts.spec == "te")
    out.append(Entry(names("pre_mlp_layernorm.weight"), (norm_hf,), layer=layer, owner=owner))
    return out + moe_entries(names, f"{hf}.mlp", layer, owner, cfg.num_experts,
                             shared=bool(cfg.moe_shared_expert_intermediate_size),
                             expert_bias=cfg.moe_router_enable_expert_bias)


def mtp_entries(cfg: ModelConfig, k: int, opts: MappingOptions) -> list[Entry]:
    """MTP layer ``k``: its own tensors, then the HF copies of the shared embedding and head."""
    hf = f"model.layers.{cfg.num_layers + k}"
    top = LayerNames(f"mtp.layers.{k}", opts)
    out = [
        Entry(top("enorm.weight"), (f"{hf}.enorm.weight",), owner="last"),
        Entry(top("hnorm.weight"), (f"{hf}.hnorm.weight",), owner="last"),
        Entry(top("eh_proj.weight"), (f"{hf}.eh_proj.weight",), tp="column", owner="last"),
        Entry(top("final_layernorm.weight"), (f"{hf}.shared_head.norm.weight",), owner="last"),
    ]
    inner = LayerNames(f"mtp.layers.{k}.transformer_layer", opts)
    moe = cfg.is_moe and cfg.num_layers - 1 >= cfg.first_k_dense_layers  # Megatron reuses the last layer's spec
    out += layer_entries(cfg, inner, hf, None, "last", moe=moe)
    head = "embedding.word_embeddings.weight" if cfg.tie_embeddings else "output_layer.weight"
    return out + [
        Entry("embedding.word_embeddings.weight", (f"{hf}.embed_tokens.weight",), tp="vocab", owner="last",
              export_copy=True),
        Entry(head, (f"{hf}.shared_head.head.weight",), tp="vocab", owner="last", export_copy=True),
    ]


def entries(cfg: ModelConfig, opts: MappingOptions) -> list[Entry]:
    names = LayerNames("decoder.layers.{layer}", opts)
    first, *head = embedding_and_head_entries(cfg.tie_embeddings)
    out = [first]
    for layer in range(cfg.num_layers):
        moe = cfg.is_moe and layer >= cfg.first_k_dense_layers
        out += layer_entries(cfg, names, f"model.layers.{layer}", layer, "layer", moe)
    out += head
    if opts.include_mtp and cfg.mtp_num_layers:
        # The MTP stage embeds the shifted tokens itself: with PP > 1 it keeps its own copy.
        out.append(Entry("embedding.word_embeddings.weight", ("model.embed_tokens.weight",), tp="vocab",
                         owner="last", tied=True))
        for k in range(cfg.mtp_num_layers):
            out += mtp_entries(cfg, k, opts)
    return out


def mtp_hf_prefixes(cfg: ModelConfig, mapped: int, declared: int) -> list[str]:
    """HF name prefixes of MTP layers ``mapped .. declared - 1``: present in a checkpoint that
    declares ``declared`` of them, skipped on import into a model that maps ``mapped``."""
    return [f"model.layers.{cfg.num_layers + k}." for k in range(mapped, declared)]


def declared_mtp_layers(raw: dict) -> int:
    """``num_nextn_predict_layers`` of a ``config.json`` (0 when absent)."""
    return int(raw.get("num_nextn_predict_layers") or 0)


def _moe_fields(hf: HFConfig) -> dict:
    hf.expect("scoring_func", ("sigmoid",), "sigmoid")
    hf.expect("topk_method", ("noaux_tc",), "noaux_tc")
    hf.expect("norm_topk_prob", (True,), True)
    hf.expect("moe_layer_freq", (1,), 1)
    moe_ffn = int(hf.require("moe_intermediate_size"))
    shared = int(hf.get("n_shared_experts") or 0)
    groups, group_topk = int(hf.get("n_group") or 1), int(hf.get("topk_group") or 1)
    topk = int(hf.require("num_experts_per_tok"))
    if groups > 1 and topk // group_topk != 2:
        warnings.warn(
            f"num_experts_per_tok // topk_group = {topk} // {group_topk} != 2: transformers scores an "
            "expert group by its top-2 experts, Megatron-Core by its top-(topk // group_topk); routing "
            "(and logits) will differ between the two"
        )
    return dict(
        num_experts=int(hf.require("n_routed_experts")),
        moe_ffn_hidden_size=moe_ffn,
        moe_shared_expert_intermediate_size=moe_ffn * shared if shared else None,
        moe_router_topk=topk,
        first_k_dense_layers=int(hf.get("first_k_dense_replace") or 0),
        moe_router_score_function="sigmoid",
        moe_router_enable_expert_bias=True,
        moe_router_num_groups=groups if groups > 1 else None,
        moe_router_group_topk=group_topk if groups > 1 else None,
        moe_router_topk_scaling_factor=float(hf.get("routed_scaling_factor") or 1.0),
    )


def _mla_fields(hf: HFConfig, heads: int) -> dict:
    kv_heads = hf.get("num_key_value_heads")
    if kv_heads not in (None, heads):
        raise InputError(f"config.json num_key_value_heads={kv_heads} must equal num_attention_heads={heads} for MLA")
    hf.expect("attention_bias", (False,), False)
    hf.get("qk_head_dim"), hf.get("head_dim")  # derived by transformers from the fields below
    return dict(
        multi_latent_attention=True,
        q_lora_rank=hf.get("q_lora_rank"),
        kv_lora_rank=int(hf.require("kv_lora_rank")),
        qk_head_dim=int(hf.require("qk_nope_head_dim")),
        qk_pos_emb_head_dim=int(hf.require("qk_rope_head_dim")),
        v_head_dim=int(hf.require("v_head_dim")),
    )


def config_from_hf(raw: dict, name: str = "deepseek_v3") -> ModelConfig:
    hf = HFConfig(raw)
    common = common_fields(hf)
    rope = read_rope(hf)
    if rope["rope_type"] == "llama3":
        raise InputError("config.json rope_parameters.rope_type='llama3' is not supported for deepseek_v3")
    cfg = ModelConfig(
        name=name,
        family="deepseek_v3",
        **common,
        **_mla_fields(hf, common["num_attention_heads"]),
        **_moe_fields(hf),
        **rope_fields(rope, "deepseek_v3"),
        mtp_num_layers=int(hf.get("num_nextn_predict_layers") or 0),
        extra=hf.extra(),
    )
    cfg.validate()
    return cfg


def config_to_hf(cfg: ModelConfig) -> dict:
    out = common_hf(cfg, ARCHITECTURE, MODEL_TYPE)
    shared = cfg.moe_shared_expert_intermediate_size or 0
    if cfg.is_moe and shared % cfg.moe_ffn_hidden_size:
        raise InputError(
            f"model.moe_shared_expert_intermediate_size={shared} is not a multiple of "
            f"model.moe_ffn_hidden_size={cfg.moe_ffn_hidden_size} (HF counts whole shared experts)"
        )
    out.update(
        num_key_value_heads=cfg.num_attention_heads,
        q_lora_rank=cfg.q_lora_rank,
        kv_lora_rank=cfg.kv_lora_rank,
        qk_nope_head_dim=cfg.qk_head_dim,
        qk_rope_head_dim=cfg.qk_pos_emb_head_dim,
        v_head_dim=cfg.v_head_dim,
        attention_bias=False,
        rope_interleave=cfg.extra.get("rope_interleave", True),
        num_nextn_predict_layers=cfg.mtp_num_layers,
    )
    if cfg.is_moe:
        out.update(
            n_routed_experts=cfg.num_experts,
            moe_intermediate_size=cfg.moe_ffn_hidden_size,
            n_shared_experts=shared // cfg.moe_ffn_hidden_size,
            num_experts_per_tok=cfg.moe_router_topk,
            first_k_dense_replace=cfg.first_k_dense_layers,
            n_group=cfg.moe_router_num_groups or 1,
            topk_group=cfg.moe_router_group_topk or 1,
            routed_scaling_factor=cfg.moe_router_topk_scaling_factor or 1.0,
            norm_topk_prob=True,
            scoring_func="sigmoid",
            topk_method="noaux_tc",
        )
    return out
