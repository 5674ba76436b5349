"""Qwen3 (dense: Qwen3-0.6B ... 32B).

A dense GQA decoder like Qwen2 but with per-head RMSNorm on queries and keys before the rotary
embedding (``self_attn.q_norm`` / ``k_norm`` -> Megatron ``q_layernorm`` / ``k_layernorm``,
``ModelConfig.qk_layernorm``), no QKV bias (``attention_bias`` must be false: HF's flag would
also put a bias on ``o_proj``), an explicit ``head_dim`` (128 on every size, which differs from
``hidden_size / num_attention_heads`` on some), SwiGLU MLP, RMSNorm, plain rotary embeddings,
and tied embeddings on the small sizes. The tensor table is :mod:`r1mega.convert.mappings.dense`'s.
Sliding-window attention and rope scaling (YaRN context extension) are refused: Megatron-Core's
standard attention has neither.
"""

from __future__ import annotations

from r1mega.config.errors import InputError
from r1mega.convert.mappings.base import Entry, MappingOptions
from r1mega.convert.mappings.dense import dense_decoder_entries, gqa_fields
from r1mega.convert.mappings.hf_config import (HFConfig, common_fields, common_hf, read_rope,
                                               require_full_attention, rope_fields)
from r1mega.models.config import ModelConfig

MODEL_TYPE = "qwen3"
ARCHITECTURE = "Qwen3ForCausalLM"


def entries(cfg: ModelConfig, opts: MappingOptions) -> list[Entry]:
    return dense_decoder_entries(cfg, opts)


def attention_fields(hf: HFConfig, common: dict, family: str) -> dict:
    """The Qwen3 attention facts (shared with Qwen3-MoE): GQA, head_dim, QK-norm, plain rope."""
    hf.expect("attention_bias", (False,), False)
    require_full_attention(hf, family)
    rope = read_rope(hf)
    if rope["rope_type"] != "default":
        raise InputError(f"config.json rope_parameters.rope_type={rope['rope_type']!r} is not supported for "
                         f"{family} (default only)")
    gqa = gqa_fields(hf, common["num_attention_heads"], common["hidden_size"])
    return dict(**gqa, qk_layernorm=True, **rope_fields(rope, family))


def attention_hf(cfg: ModelConfig) -> dict:
    """config.json keys of :func:`attention_fields` (``head_dim`` always: Qwen3Config's default
    is 128, not hidden / heads)."""
    return dict(num_key_value_heads=cfg.kv_heads, head_dim=cfg.head_dim, attention_bias=False,
                use_sliding_window=False)


def config_from_hf(raw: dict, name: str = "qwen3") -> ModelConfig:
    hf = HFConfig(raw)
    common = common_fields(hf)
    cfg = ModelConfig(name=name, family="qwen3", **common, **attention_fields(hf, common, "qwen3"), extra=hf.extra())
    cfg.validate()
    return cfg


def config_to_hf(cfg: ModelConfig) -> dict:
    out = common_hf(cfg, ARCHITECTURE, MODEL_TYPE)
    out.update(attention_hf(cfg), layer_types=["full_attention"] * cfg.num_layers)
    return out
