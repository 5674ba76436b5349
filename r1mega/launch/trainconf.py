"""Compose a job's ``r1mega-train`` configuration here, before it waits in a queue.

The planner needs the model, layout, batch sizes, sequence length and precision the job will
really use, including the defaults of ``conf/config.yaml`` the user never typed. Hydra's
compose API builds exactly the tree ``r1mega-train`` will build from the same overrides
(``hydra.*`` overrides aside, which only move output directories), so:

* a typo (``optim.lrr=1``), a wrong type or a missing group option (``stage=nope``) fails at
  launch time, with Hydra's message naming the key, instead of minutes after the job starts;
* the memory estimate sees the composed values, and ``plan.*`` overrides go on top of them.

The trainer's own start-up checks that depend on the machine (FP8 needs CUDA) are left to
the job; the layout checks run in the planner (``r1mega.plan.layout``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from r1mega.config.compose import compose as compose_config
from r1mega.config.compose import hydra_session
from r1mega.config.errors import ConfigError
from r1mega.config.overrides import split


def compose(overrides: list[str]):
    """The ``R1Config`` of these ``r1mega-train`` overrides; ValueError names the bad key."""
    task = [o for o in overrides if not split(o)[0].startswith("hydra.")]
    try:
        with hydra_session():
            return compose_config(task)
    except Exception as err:  # Hydra raises several exception types, all meaning "bad override"
        raise ConfigError(f"r1mega-train configuration: {_message(err)}") from None


def _message(err: BaseException) -> str:
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    cause = err.__cause__
    if cause is not None and str(cause):
        text += f" ({str(cause).splitlines()[0]})"
    return text


def plan_base(config) -> dict[str, Any]:
    """Planner fields taken from a composed ``R1Config``."""
    precision = config.trainer.precision
    return {
        "model": config.model.name,
        "parallel": dataclasses.asdict(config.parallel),
        "micro_batch_size": config.trainer.micro_batch_size,
        "global_batch_size": config.trainer.global_batch_size,
        "seq_length": config.data.seq_length,
        "dtype": "fp32" if precision.dtype == "fp32" else "bf16",  # 'auto' is bf16 on GPUs
        "fp8": precision.fp8 is not None,
        "fp8_param": precision.fp8_param,
    }
