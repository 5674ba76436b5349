"""Optional mirrors of ``metrics.jsonl``: TensorBoard and Weights & Biases (``trainer.loggers``).

Every sink has the same two methods, ``log(step, metrics)`` and ``close()``, and receives the
same scalars: the numeric, finite values of the step's ``metrics.jsonl`` line under the same keys
(``step``, ``stage`` and ``time`` are the step, the run name and the event's wall time there;
strings and the ``null`` of a non-finite value stay in ``metrics.jsonl`` only).

- ``tensorboard`` writes event files to ``<run dir>/tensorboard/<stage>/``. The first step a
  writer logs is its purge step, so a resumed run hides the old events of the steps it redoes
  (as ``metrics.jsonl`` drops their lines).
- ``wandb`` starts one W&B run per launch (a resume starts a new one) in ``<run dir>/wandb/``,
  named after the stage, grouped by the run directory's name, with the resolved ``config.yaml``
  as its config. W&B's own environment variables apply: ``WANDB_MODE=offline`` (no network;
  ``wandb sync`` uploads later), ``WANDB_PROJECT`` (default ``r1mega``), ``WANDB_RUN_GROUP``
  (e.g. one group for all steps of a pipeline), ``WANDB_ENTITY``.
"""

from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path
from typing import Iterable, Sequence

PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb"}
"""Each sink name and the package it needs."""


def check_loggers(names: Iterable[str], field: str = "trainer.loggers") -> None:
    """Raise ValueError (one line at the CLI) for an unknown or repeated name or a missing package."""
    names = list(names)
    for name in names:
        if name not in PACKAGES:
            raise ValueError(f"{field}: unknown logger {name!r}; choose from {', '.join(PACKAGES)}")
        if names.count(name) > 1:
            raise ValueError(f"{field}: logger {name!r} is listed twice")
    for name in names:
        package = PACKAGES[name]
        if importlib.util.find_spec(package) is None:
            raise ValueError(f"{field} asks for {name!r}, which needs the {package!r} package: "
                              f"pip install {package}")


def scalars(metrics: dict) -> dict[str, float]:
    """The values every sink receives: numbers that are finite (bools become 0/1)."""
    out = {}
    for key, value in metrics.items():
        if isinstance(value, (int, float)) and math.isfinite(value):
            out[key] = float(value)
    return out


class TensorBoardSink:
    """Scalars under their metrics.jsonl keys, one event file per writer."""

    def __init__(self, log_dir: str | Path):
        self.log_dir = Path(log_dir)
        self._writer = None

    def log(self, step: int, metrics: dict[str, float]) -> None:
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.log_dir), purge_step=step)
        for key, value in metrics.items():
            self._writer.add_scalar(key, value, global_step=step)
        self._writer.flush()  # a killed run keeps what it logged, as metrics.jsonl does

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class WandbSink:
    """One W&B run; ``step`` is W&B's step, so two calls for one step fill one row."""

    def __init__(self, run_dir: str | Path, stage: str):
        import wandb

        run_dir = Path(run_dir)
        config_path = run_dir / "config.yaml"
        config = None
        if config_path.exists():
            from omegaconf import OmegaConf

            config = OmegaConf.to_container(OmegaConf.load(config_path))
        self._run = wandb.init(project=os.environ.get("WANDB_PROJECT", "r1mega"), name=stage,
                               group=os.environ.get("WANDB_RUN_GROUP", run_dir.resolve().name),
                               dir=str(run_dir), config=config)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        self._run.log(metrics, step=step)

    def close(self) -> None:
        if self._run is not None:
            self._run.finish()
            self._run = None


def make_sinks(names: Sequence[str], run_dir: str | Path, stage: str) -> list:
    """The sinks ``names`` asks for (checked first), writing under ``run_dir``."""
    check_loggers(names)
    sinks = []
    for name in names:
        if name == "tensorboard":
            sinks.append(TensorBoardSink(Path(run_dir) / "tensorboard" / stage))
        elif name == "wandb":
            sinks.append(WandbSink(run_dir, stage))
    return sinks
