"""Qwen3-MoE (Qwen3-30B-A3B, Qwen3-235B-A22B).

Qwen3's attention (:mod:`r1mega.convert.mappings.qwen3`: GQA with per-head QK RMSNorm, no
bias) with a routed-expert MLP in every layer: a softmax router over ``num_experts`` (128),
``num_experts_per_tok`` (8) experts per token whose weights are renormalised to sum to 1 when
``norm_topk_prob`` is true (both released models), no shared expert, no expert bias.

Per layer ``L`` (HF ``model.layers.L.``, Megatron ``decoder.layers.L.``): the attention entries
of :mod:`~r1mega.convert.mappings.dense`, then

=============================================  =================================  ===========
Megatron (local spec; TE grouped GEMM in [])    Hugging Face                       TP split
=============================================  =================================  ===========
pre_mlp_layernorm.weight                        post_attention_layernorm.weight    replicated
mlp.router.weight                               mlp.gate.weight                    replicated
mlp.experts.local_experts.{e}.linear_fc1        mlp.experts.{E}.{gate,up}_proj     gate_up (expert TP)
  [mlp.experts.linear_fc1.weight{e}]
mlp.experts.local_experts.{e}.linear_fc2        mlp.experts.{E}.down_proj          row (expert TP)
=============================================  =================================  ===========

(transformers 5 fuses the experts in memory but reads and writes these per-expert names.)

Routing. transformers takes the softmax over all experts in fp32, keeps the top k and divides
by their sum; Megatron (``moe_router_pre_softmax=False``, ``moe_router_dtype=fp32``) keeps the
top-k logits and takes their softmax -- the same numbers. ``norm_topk_prob: false`` maps to
Megatron's pre-softmax (full softmax, no renormalisation). Only layouts where every layer is a
MoE layer are supported (``decoder_sparse_step: 1``, ``mlp_only_layers: []``, as released);
``intermediate_size`` (the size dense layers would have) is carried as ``ffn_hidden_size``.
The expert count is ``num_experts`` in the released config.json files and ``num_local_experts``
(transformers 5's attribute behind ``num_experts``) in those ``save_pretrained`` writes; either
is read, ``num_experts`` is written.
``router_aux_loss_coef`` is a training choice and stays in ``extra``.
"""

from __future__ import annotations

from r1mega.config.errors import InputError
from r1mega.convert.mappings.base import Entry, LayerNames, MappingOptions, embedding_and_head_entries, moe_entries
from r1mega.convert.mappings.dense import attention_entries
from r1mega.convert.mappings.hf_config import HFConfig, common_fields, common_hf
from r1mega.convert.mappings.qwen3 import attention_fields, attention_hf
from r1mega.models.config import ModelConfig

MODEL_TYPE = "qwen3_moe"
ARCHITECTURE = "Qwen3MoeForCausalLM"


def entries(cfg: ModelConfig, opts: MappingOptions) -> list[Entry]:
    names = LayerNames("decoder.layers.{layer}", opts)
    first, *head = embedding_and_head_entries(cfg.tie_embeddings)
    out = [first]
    for layer in range(cfg.num_layers):
        hf = f"model.layers.{layer}"
        out += attention_entries(cfg, layer, opts)
        out.append(Entry(names("pre_mlp_layernorm.weight"), (f"{hf}.post_attention_layernorm.weight",), layer=layer))
        out += moe_entries(names, f"{hf}.mlp", layer, "layer", cfg.num_experts, shared=False, expert_bias=False)
    return out + head


def _moe_fields(hf: HFConfig) -> dict:
    hf.expect("decoder_sparse_step", (1,), 1)
    mlp_only = hf.get("mlp_only_layers") or []
    if mlp_only:
        raise InputError(f"config.json mlp_only_layers={mlp_only} is not supported for qwen3_moe "
                         "(every layer must be a MoE layer, as in the released models)")
    experts, local = hf.get("num_experts"), hf.get("num_local_experts")
    if experts is not None and local is not None and experts != local:
        raise InputError(f"config.json num_experts={experts} and num_local_experts={local} disagree")
    if experts is None and local is None:
        hf.require("num_experts")  # raises, naming the field
    return dict(
        num_experts=int(experts if experts is not None else local),
        moe_ffn_hidden_size=int(hf.require("moe_intermediate_size")),
        moe_router_topk=int(hf.require("num_experts_per_tok")),
        moe_router_score_function="softmax",
        moe_router_norm_topk=bool(hf.get("norm_topk_prob", False)),
    )


def config_from_hf(raw: dict, name: str = "qwen3_moe") -> ModelConfig:
    hf = HFConfig(raw)
    common = common_fields(hf)
    cfg = ModelConfig(name=name, family="qwen3_moe", **common, **attention_fields(hf, common, "qwen3_moe"),
                      **_moe_fields(hf), extra=hf.extra())
    cfg.validate()
    return cfg


def config_to_hf(cfg: ModelConfig) -> dict:
    if cfg.first_k_dense_layers or cfg.moe_shared_expert_intermediate_size or cfg.moe_router_enable_expert_bias \
            or cfg.moe_router_score_function != "softmax" or cfg.moe_router_num_groups \
            or cfg.moe_router_topk_scaling_factor not in (None, 1.0):
        raise InputError(
            f"model {cfg.name!r} (family qwen3_moe) has routing Qwen3-MoE cannot express: needs "
            "first_k_dense_layers=0, no shared expert, no expert bias, softmax scores, no groups, no scaling "
            f"(got first_k_dense_layers={cfg.first_k_dense_layers}, "
            f"moe_shared_expert_intermediate_size={cfg.moe_shared_expert_intermediate_size}, "
            f"moe_router_enable_expert_bias={cfg.moe_router_enable_expert_bias}, "
            f"moe_router_score_function={cfg.moe_router_score_function!r}, "
            f"moe_router_num_groups={cfg.moe_router_num_groups}, "
            f"moe_router_topk_scaling_factor={cfg.moe_router_topk_scaling_factor})")
    out = common_hf(cfg, ARCHITECTURE, MODEL_TYPE)
    out.update(
        attention_hf(cfg),
        num_experts=cfg.num_experts,
        moe_intermediate_size=cfg.moe_ffn_hidden_size,
        num_experts_per_tok=cfg.moe_router_topk,
        norm_topk_prob=cfg.moe_router_norm_topk,
        decoder_sparse_step=1,
        mlp_only_layers=[],
    )
    return out
