"""The recipe's stages; each exposes ``run(cfg, dims) -> summary dict``."""

from __future__ import annotations

import importlib

from r1mega.config.errors import ConfigError

_MODULES = {
    "sft": "r1mega.stages.sft",
    "r1_zero": "r1mega.stages.grpo",
    "reasoning_rl": "r1mega.stages.grpo",
    "eval": "r1mega.stages.evaluate",
    "rejection_sampling": "r1mega.stages.rejection_sampling",
    "distill_generate": "r1mega.stages.distill_generate",
    "all_scenario_rl": "r1mega.stages.all_scenario_rl",
}


def get_stage(name: str):
    if name not in _MODULES:
        raise ConfigError(f"stage={name!r} is not implemented yet (available: {sorted(_MODULES)})")
    return importlib.import_module(_MODULES[name]).run
