"""Shared pieces of the ``config.json`` <-> :class:`ModelConfig` translation.

Hugging Face configs come in two dialects: transformers >= 5 writes ``rope_parameters``
(``{"rope_type", "rope_theta", "factor", ...}``); older checkpoints (including DeepSeek-V3's
own ``config.json``) write ``rope_theta`` at the top level and ``rope_scaling`` with ``type``
or ``rope_type``. :func:`read_rope` accepts both; :func:`write_rope` writes the transformers 5
form, which is what the installed transformers (and vLLM on it) read back.

Keys a family does not interpret are kept in ``ModelConfig.extra`` and written back on
export, so tokens ids, ``initializer_range`` and the like survive a round trip. Keys that are
stale after conversion (versions, dtype, quantization of the source, remote-code hooks) are
dropped; see :data:`DROPPED_KEYS`.
"""

from __future__ import annotations

from typing import Any

DROPPED_KEYS = frozenset(
    {
        "transformers_version", "architectures", "model_type", "dtype", "torch_dtype", "_name_or_path",
        "quantization_config", "auto_map", "rope_scaling", "rope_theta", "rope_parameters",
    }
)
"""Never carried in ``extra``: written fresh by the family or meaningless after conversion."""

ARCHITECTURE_EXEMPT = frozenset(
    {"name", "spec", "init_method_std", "moe_router_bias_update_rate", "moe_aux_loss_coeff",
     "moe_grouped_gemm", "mtp_loss_scaling_factor", "extra"}
)
"""ModelConfig fields that are training choices, not facts of the checkpoint: a YAML model
config may differ from the HF config.json in these and still describe the same weights."""
from r1mega.config.errors import InputError


class HFConfig:
    """A ``config.json`` dict that remembers which keys were read (the rest go to ``extra``)."""

    def __init__(self, raw: dict):
        self.raw = dict(raw)
        self.used: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.used.add(key)
        return self.raw.get(key, default)

    def require(self, key: str) -> Any:
        self.used.add(key)
        if self.raw.get(key) is None:
            arch = self.raw.get("model_type", "?")
            raise InputError(f"config.json ({arch}) is missing the required field {key!r}")
        return self.raw[key]

    def expect(self, key: str, allowed: tuple, default: Any = None) -> Any:
        """Read ``key`` and raise a ValueError naming it when its value is not supported."""
        value = self.get(key, default)
        if value not in allowed:
            raise InputError(f"config.json field {key}={value!r} is not supported (supported: {allowed})")
        return value

    def extra(self) -> dict:
        return {k: v for k, v in self.raw.items() if k not in self.used and k not in DROPPED_KEYS}


def require_full_attention(hf: HFConfig, family: str) -> None:
    """InputError unless every layer of the checkpoint uses full attention (Megatron-Core has no
    sliding window); the Qwen families declare it with ``use_sliding_window`` / ``layer_types``."""
    if hf.get("use_sliding_window", False):
        raise InputError(f"config.json use_sliding_window=true is not supported for {family} "
                         "(Megatron-Core has no sliding window)")
    hf.get("sliding_window"), hf.get("max_window_layers")  # meaningful only with use_sliding_window
    layer_types = hf.get("layer_types") or []
    if any(t != "full_attention" for t in layer_types):
        raise InputError(f"config.json layer_types={sorted(set(layer_types))} is not supported (full_attention only)")


def read_rope(hf: HFConfig) -> dict:
    """``{"type", "theta", ...scaling params}`` from either config dialect."""
    params = dict(hf.get("rope_parameters") or {})
    legacy = dict(hf.get("rope_scaling") or {})
    theta = params.get("rope_theta", hf.get("rope_theta", 10000.0))
    merged = {**legacy, **params}
    rope_type = merged.get("rope_type", merged.get("type")) or "default"
    if rope_type not in ("default", "yarn", "llama3"):
        raise InputError(
            f"config.json rope_parameters.rope_type={rope_type!r} is not supported (default, yarn, llama3)"
        )
    merged.pop("type", None)
    merged["rope_type"] = rope_type
    merged["rope_theta"] = float(theta)
    return merged


def rope_fields(rope: dict, family: str) -> dict:
    """ModelConfig rope fields for the rope dict from :func:`read_rope`."""
    out = dict(rotary_base=rope["rope_theta"])
    kind = rope["rope_type"]
    if kind == "default":
        return {**out, "rope_type": "rope"}
    if kind == "llama3":
        return {**out, **_llama3_fields(rope)}
    if rope.get("truncate", True) is not True:
        raise InputError("config.json rope_parameters.truncate=false is not supported by Megatron-Core's YaRN")
    mscale, mscale_all_dim = rope.get("mscale"), rope.get("mscale_all_dim")
    if rope.get("attention_factor") is not None:
        raise InputError("config.json rope_parameters.attention_factor is not supported; give mscale/mscale_all_dim")
    if mscale and not mscale_all_dim and mscale != 1.0:
        raise InputError(
            f"config.json rope_parameters.mscale={mscale} without mscale_all_dim is ignored by "
            "transformers but used by Megatron-Core; set mscale_all_dim"
        )
    return {
        **out,
        "rope_type": "yarn",
        "rope_scaling_factor": float(rope["factor"]),
        "rope_original_max_position_embeddings": int(rope["original_max_position_embeddings"]),
        "yarn_beta_fast": float(rope.get("beta_fast") or 32.0),
        "yarn_beta_slow": float(rope.get("beta_slow") or 1.0),
        "yarn_mscale": float(mscale or 1.0),
        "yarn_mscale_all_dim": float(mscale_all_dim or 0.0),
    }


def _llama3_fields(rope: dict) -> dict:
    for key in ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"):
        if rope.get(key) is None:
            raise InputError(f"config.json rope_parameters.{key} is missing (needed for rope_type 'llama3')")
    return {
        "rope_type": "llama3",
        "rope_scaling_factor": float(rope["factor"]),
        "rope_low_freq_factor": float(rope["low_freq_factor"]),
        "rope_high_freq_factor": float(rope["high_freq_factor"]),
        "rope_original_max_position_embeddings": int(rope["original_max_position_embeddings"]),
    }


def write_rope(cfg) -> dict:
    """The transformers 5 ``rope_parameters`` dict for a ModelConfig."""
    out: dict = {"rope_theta": cfg.rotary_base}
    if cfg.rope_type == "rope":
        return {**out, "rope_type": "default"}
    if cfg.rope_type == "llama3":
        return {**out, "rope_type": "llama3", "factor": cfg.rope_scaling_factor,
                "low_freq_factor": cfg.rope_low_freq_factor, "high_freq_factor": cfg.rope_high_freq_factor,
                "original_max_position_embeddings": cfg.rope_original_max_position_embeddings}
    return {
        **out,
        "rope_type": "yarn",
        "factor": cfg.rope_scaling_factor,
        "original_max_position_embeddings": cfg.rope_original_max_position_embeddings,
        "beta_fast": cfg.yarn_beta_fast,
        "beta_slow": cfg.yarn_beta_slow,
        "mscale": cfg.yarn_mscale,
        "mscale_all_dim": cfg.yarn_mscale_all_dim,
    }


def common_fields(hf: HFConfig) -> dict:
    """ModelConfig fields every decoder family spells the same way."""
    hf.expect("hidden_act", ("silu",), "silu")
    heads = int(hf.require("num_attention_heads"))
    return dict(
        num_layers=int(hf.require("num_hidden_layers")),
        hidden_size=int(hf.require("hidden_size")),
        ffn_hidden_size=int(hf.require("intermediate_size")),
        num_attention_heads=heads,
        vocab_size=int(hf.require("vocab_size")),
        max_position_embeddings=int(hf.get("max_position_embeddings", 4096)),
        norm_epsilon=float(hf.get("rms_norm_eps", 1e-6)),
        tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
        init_method_std=float(hf.get("initializer_range", 0.02)),
    )


def common_hf(cfg, architecture: str, model_type: str) -> dict:
    """config.json keys every family writes the same way (``extra`` first, facts win)."""
    return {
        **cfg.extra,
        "architectures": [architecture],
        "model_type": model_type,
        "hidden_act": "silu",
        "num_hidden_layers": cfg.num_layers,
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.ffn_hidden_size,
        "num_attention_heads": cfg.num_attention_heads,
        "vocab_size": cfg.vocab_size,
        "max_position_embeddings": cfg.max_position_embeddings,
        "rms_norm_eps": cfg.norm_epsilon,
        "tie_word_embeddings": cfg.tie_embeddings,
        "initializer_range": cfg.init_method_std,
        "rope_parameters": write_rope(cfg),
    }
