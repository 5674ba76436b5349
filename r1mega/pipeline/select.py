"""Does this ``r1mega-train`` command run a pipeline or a single stage, and in which directory?

``r1mega-train`` with no arguments runs the default pipeline (``pipeline: tiny_r1`` in
conf/config.yaml). Choosing a stage on the command line (``stage=sft``) runs that stage as
before, whatever the default pipeline; ``pipeline=none`` also selects the single-stage mode.
Naming both ``pipeline=X`` and ``stage=Y`` explicitly is an error.

A pipeline's directory is stable -- ``runs/pipeline/<name>`` -- so rerunning the same command
resumes it; a stage keeps its timestamped ``runs/<stage>/<time>``. Hydra computes the run
directory before any r1mega code runs, so the choice is made by an OmegaConf resolver,
``r1mega_run_dir``, that conf/config.yaml's ``hydra.run.dir`` calls with the composed stage
and pipeline names, the time and the command-line overrides.
"""

from __future__ import annotations

from typing import Iterable, Optional

from r1mega.config.errors import ConfigError
from r1mega.config.overrides import override_key


def _chosen(overrides: Iterable[str], group: str) -> bool:
    return any(override_key(o) in (group, f"{group}.name") for o in overrides or ())


def runs_pipeline(pipeline_name: Optional[str], overrides: Iterable[str]) -> bool:
    """True when the command runs pipeline ``pipeline_name``; ConfigError when it names both."""
    overrides = list(overrides or ())
    if _chosen(overrides, "pipeline") and _chosen(overrides, "stage") and pipeline_name:
        raise ConfigError("choose either pipeline=... or stage=... (pipeline=none runs a single stage)")
    return bool(pipeline_name) and not _chosen(overrides, "stage")


def run_dir(stage_name: str, pipeline_name: Optional[str], now: str, overrides=None) -> str:
    """The default hydra.run.dir (see the module docstring)."""
    try:
        pipeline = runs_pipeline(pipeline_name, list(overrides or ()))
    except ValueError:
        pipeline = False  # reported by r1mega-train itself, with exit code 2
    return f"runs/pipeline/{pipeline_name}" if pipeline else f"runs/{stage_name}/{now}"


def register_resolvers() -> None:
    from omegaconf import OmegaConf

    OmegaConf.register_new_resolver("r1mega_run_dir", run_dir, replace=True)
