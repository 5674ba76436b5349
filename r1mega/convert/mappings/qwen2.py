"""Qwen2 / Qwen2.5 (and the Qwen-based R1-Distill students).

A dense GQA decoder with biases on the query/key/value projections (``add_qkv_bias``), no
other biases, SwiGLU MLP, RMSNorm, plain rotary embeddings, and tied input/output embeddings
on the small sizes (``tie_word_embeddings``: the HF checkpoint then has no ``lm_head.weight``).
The tensor table is :mod:`r1mega.convert.mappings.dense`'s. Sliding-window attention
(``use_sliding_window``) has no Megatron-Core equivalent here and is refused.
"""

from __future__ import annotations

from r1mega.config.errors import InputError
from r1mega.convert.mappings.base import Entry, MappingOptions
from r1mega.convert.mappings.dense import dense_decoder_entries, gqa_fields
from r1mega.convert.mappings.hf_config import (HFConfig, common_fields, common_hf, read_rope,
                                               require_full_attention, rope_fields)
from r1mega.models.config import ModelConfig

MODEL_TYPE = "qwen2"
ARCHITECTURE = "Qwen2ForCausalLM"


def entries(cfg: ModelConfig, opts: MappingOptions) -> list[Entry]:
    return dense_decoder_entries(cfg, opts)


def config_from_hf(raw: dict, name: str = "qwen2") -> ModelConfig:
    hf = HFConfig(raw)
    require_full_attention(hf, "qwen2")
    rope = read_rope(hf)
    if rope["rope_type"] != "default":
        raise InputError(f"config.json rope_parameters.rope_type={rope['rope_type']!r} is not supported for qwen2")
    common = common_fields(hf)
    cfg = ModelConfig(
        name=name,
        family="qwen2",
        **common,
        **gqa_fields(hf, common["num_attention_heads"], common["hidden_size"]),
        add_qkv_bias=True,
        **rope_fields(rope, "qwen2"),
        extra=hf.extra(),
    )
    cfg.validate()
    return cfg


def config_to_hf(cfg: ModelConfig) -> dict:
    out = common_hf(cfg, ARCHITECTURE, MODEL_TYPE)
    out.update(
        num_key_value_heads=cfg.kv_heads,
        use_sliding_window=False,
        layer_types=["full_attention"] * cfg.num_layers,
    )
    if cfg.kv_channels:
        out["head_dim"] = cfg.kv_channels
    return out
