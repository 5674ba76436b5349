"""Configuration keys that moved, and the one-line error that names the new key.

Hydra alone would answer ``rollout.vllm_tp=2`` with "Key 'vllm_tp' is not in struct". The
command line (and each pipeline step's override list) is checked against :data:`RENAMED`
before composing, and a composition error of a renamed key in a YAML file is translated by
:func:`explain`, so the message says where the setting lives now.
"""

from __future__ import annotations

from typing import Iterable, Optional

from r1mega.config.errors import ConfigError
from r1mega.pipeline.select import override_key

VLLM_KEYS = ("tp", "gpu_memory_utilization", "colocate", "enforce_eager", "gpus", "sleep_level", "bucket_mb",
             "fp8", "max_model_len", "max_num_seqs", "attention_backend", "model_dir")

RENAMED = {
    **{f"rollout.vllm_{k}": f"rollout.vllm.{k}" for k in VLLM_KEYS},
    "rollout.eval_temperature": "evaluation.temperature",
    "rollout.eval_top_p": "evaluation.top_p",
    "rollout.eval_k": "evaluation.k",
    "rollout.eval_max_tokens": "evaluation.max_tokens",
    "rollout.record_dir": "rl.record_dir",
    "rollout.replay_dir": "rl.replay_dir",
}
"""Old key -> new key."""


def renamed_error(key: str) -> ConfigError:
    return ConfigError(f"{key} was renamed: use {RENAMED[key]}")


def check_overrides(overrides: Iterable[str]) -> None:
    """ConfigError for the first override (``key=value``, ``+key=...``, ``~key``) of a renamed key."""
    for o in overrides:
        if o.startswith("-"):  # a Hydra flag (--cfg, -m, ...), not an override
            continue
        key = override_key(o)
        if key in RENAMED:
            raise renamed_error(key)


def explain(exc: BaseException) -> Optional[ConfigError]:
    """The renamed-key error behind a Hydra/OmegaConf composition error, if that is its cause."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        key = getattr(exc, "full_key", None)
        if key in RENAMED:
            return renamed_error(key)
        exc = exc.__cause__ or exc.__context__
    return None
