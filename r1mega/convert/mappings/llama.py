"""Llama 2/3/3.1 (and the Llama-based R1-Distill students).

A dense GQA decoder without biases (``attention_bias`` / ``mlp_bias`` must be false: Megatron's
``add_qkv_bias`` would not cover the output projection's bias), SwiGLU MLP, RMSNorm, and
rotary embeddings either plain or with Llama-3.1 frequency scaling (``rope_type: llama3``, any
``factor``, ``low_freq_factor``, ``high_freq_factor`` and ``original_max_position_embeddings``:
Megatron-Core 0.16 hard-codes the last three, the provider recomputes the frequencies with
them). The tensor table is :mod:`r1mega.convert.mappings.dense`'s.
"""

from __future__ import annotations

from r1mega.config.errors import InputError
from r1mega.convert.mappings.base import Entry, MappingOptions
from r1mega.convert.mappings.dense import dense_decoder_entries, gqa_fields
from r1mega.convert.mappings.hf_config import HFConfig, common_fields, common_hf, read_rope, rope_fields
from r1mega.models.config import ModelConfig

MODEL_TYPE = "llama"
ARCHITECTURE = "LlamaForCausalLM"


def entries(cfg: ModelConfig, opts: MappingOptions) -> list[Entry]:
    return dense_decoder_entries(cfg, opts)


def config_from_hf(raw: dict, name: str = "llama") -> ModelConfig:
    hf = HFConfig(raw)
    hf.expect("attention_bias", (False,), False)
    hf.expect("mlp_bias", (False,), False)
    hf.expect("pretraining_tp", (1, None), 1)
    rope = read_rope(hf)
    if rope["rope_type"] == "yarn":
        raise InputError("config.json rope_parameters.rope_type='yarn' is not supported for llama (default, llama3)")
    common = common_fields(hf)
    cfg = ModelConfig(
        name=name,
        family="llama",
        **common,
        **gqa_fields(hf, common["num_attention_heads"], common["hidden_size"]),
        **rope_fields(rope, "llama"),
        extra=hf.extra(),
    )
    cfg.validate()
    return cfg


def config_to_hf(cfg: ModelConfig) -> dict:
    out = common_hf(cfg, ARCHITECTURE, MODEL_TYPE)
    out.update(
        num_key_value_heads=cfg.kv_heads,
        head_dim=cfg.head_dim,
        attention_bias=False,
        mlp_bias=False,
    )
    return out
