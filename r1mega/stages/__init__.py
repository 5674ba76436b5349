"""The recipe's stages; each exposes ``run(cfg, dims) -> summary dict``."""

from __future__ import annotations

import importlib

_MODULES = {
    "sft": "r1mega.stages.sft",
    "r1_zero": "r1mega.stages.grpo",
    "reasoning_rl": "r1mega.stages.grpo",
}


def get_stage(name: str):
    if name not in _MODULES:
        raise ValueError(f"stage={name!r} is not implemented yet (available: {sorted(_MODULES)})")
    return importlib.import_module(_MODULES[name]).run
