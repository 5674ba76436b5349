"""Name mappings between Hugging Face checkpoints and Megatron-Core ``GPTModel`` parameters.

One module per family (``deepseek_v3``, ``qwen2``, ``llama``, ``qwen3``, ``qwen3_moe``) lists its tensors as
:class:`~r1mega.convert.mappings.base.Entry` objects and translates its ``config.json``.
This package is the single source of those facts: the offline converters, the streaming
exporter and the vLLM weight bridge all walk :func:`entries`.

>>> cfg = model_config_from_hf(json.load(open("config.json")))
>>> for e in entries(cfg, MappingOptions(spec="te")):
...     e.global_name, e.hf, e.merge, e.tp
"""

from __future__ import annotations

from types import ModuleType

from r1mega.config.errors import InputError
from r1mega.convert.mappings import deepseek_v3, llama, qwen2, qwen3, qwen3_moe
from r1mega.convert.mappings.base import Entry, MappingOptions
from r1mega.convert.mappings.hf_config import ARCHITECTURE_EXEMPT
from r1mega.models.config import ModelConfig

FAMILY_MODULES: dict[str, ModuleType] = {
    "deepseek_v3": deepseek_v3, "qwen2": qwen2, "llama": llama, "qwen3": qwen3, "qwen3_moe": qwen3_moe,
}


def family(name: str) -> ModuleType:
    if name not in FAMILY_MODULES:
        raise InputError(f"model.family={name!r} has no checkpoint mapping (known: {sorted(FAMILY_MODULES)})")
    return FAMILY_MODULES[name]


def family_of_hf(raw: dict) -> str:
    """The family of a ``config.json`` (by ``model_type``, else by ``architectures``)."""
    model_type = raw.get("model_type")
    if model_type in FAMILY_MODULES:
        return model_type
    archs = raw.get("architectures") or []
    for name, mod in FAMILY_MODULES.items():
        if mod.ARCHITECTURE in archs:
            return name
    known = ", ".join(f"{n} ({m.ARCHITECTURE})" for n, m in FAMILY_MODULES.items())
    raise InputError(f"unknown architecture: config.json model_type={model_type!r}, architectures={archs}; "
                     f"supported: {known}")


def model_config_from_hf(hf_config: dict, name: str | None = None) -> ModelConfig:
    """Translate a HF ``config.json`` dict into a validated :class:`ModelConfig`."""
    fam = family_of_hf(hf_config)
    return family(fam).config_from_hf(hf_config, name=name or fam)


def hf_config_from_model(cfg: ModelConfig, dtype: str | None = None) -> dict:
    """The HF ``config.json`` dict for a :class:`ModelConfig` (``dtype``: e.g. ``"bfloat16"``)."""
    out = family(cfg.family).config_to_hf(cfg)
    if dtype is not None:
        out["dtype"] = dtype
    return out


def entries(cfg: ModelConfig, opts: MappingOptions | None = None) -> list[Entry]:
    """Every tensor of the model, in checkpoint order, with global layer/expert ids."""
    return family(cfg.family).entries(cfg, opts or MappingOptions())


def skipped_hf_prefixes(cfg: ModelConfig, opts: MappingOptions, hf_config: dict | None = None) -> list[str]:
    """HF tensors that exist but are deliberately not mapped: the MTP layers a checkpoint
    declares (``hf_config``; default: ``cfg``'s own count) beyond those the model maps."""
    if cfg.family != "deepseek_v3":
        return []
    declared = deepseek_v3.declared_mtp_layers(hf_config) if hf_config is not None else cfg.mtp_num_layers
    mapped = cfg.mtp_num_layers if opts.include_mtp else 0
    return deepseek_v3.mtp_hf_prefixes(cfg, mapped, declared)


def mtp_hf_prefixes(cfg: ModelConfig, count: int) -> list[str]:
    """HF name prefixes of the first ``count`` multi-token-prediction layers of ``cfg``'s family
    (one per layer; empty for families without MTP layers)."""
    if cfg.family != "deepseek_v3":
        return []
    return deepseek_v3.mtp_hf_prefixes(cfg, 0, count)


def architecture_mismatches(a: ModelConfig, b: ModelConfig, ignore: tuple = ()) -> list[str]:
    """Fields (``model.<name>: a != b``) where two configs describe different weights
    (``ignore``: further fields to leave out, e.g. ``("mtp_num_layers",)``)."""
    from dataclasses import fields

    out = []
    for f in fields(ModelConfig):
        if f.name in ARCHITECTURE_EXEMPT or f.name in ignore:
            continue
        va, vb = getattr(a, f.name), getattr(b, f.name)
        if va != vb:
            out.append(f"model.{f.name}: {va!r} != {vb!r}")
    return out


__all__ = [
    "Entry", "MappingOptions", "entries", "family", "family_of_hf", "model_config_from_hf",
    "hf_config_from_model", "skipped_hf_prefixes", "mtp_hf_prefixes", "architecture_mismatches",
]
