"""The ``pipeline=`` group: a recipe as an ordered list of steps (conf/pipeline/*.yaml).

A step is one of

* ``kind: stage`` -- an ``r1mega-train`` run composed from ``pipeline.common``, the other
  overrides given on the pipeline's command line, and the step's own ``overrides`` (later
  ones win), in ``<pipeline dir>/<step name>``;
* ``kind: mix`` -- no model: merge the SFT JSONL files ``inputs`` with the user's non-reasoning
  data ``pipeline.extra_sft_files`` at ``pipeline.extra_sft_ratio`` into ``<step dir>/data.jsonl``.

In overrides and inputs, ``@{name}`` is replaced by step ``name``'s directory and ``@{pipeline}``
by the pipeline directory, so a step consumes an earlier step's checkpoint
(``trainer.init_from=@{cold_start}/checkpoints``) or dataset (``@{rejection_sampling}/data.jsonl``).
Tunables live in ``pipeline.vars`` and are referenced with OmegaConf interpolation
(``trainer.max_steps=${pipeline.vars.cold_start_steps}``), so
``r1mega-train pipeline.vars.cold_start_steps=300`` retunes a step from the command line.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from r1mega.config.errors import ConfigError

KINDS = ("stage", "mix")
NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


@dataclass
class StepConfig:
    """One step of a pipeline."""

    name: str = ""
    """Unique name: the step's directory <pipeline dir>/<name>, referred to as @{name}."""
    kind: str = "stage"
    """'stage' (an r1mega-train run) or 'mix' (merge SFT data files)."""
    overrides: List[str] = field(default_factory=list)
    """kind=stage: r1mega-train overrides of this step (stage=... among them)."""
    inputs: List[str] = field(default_factory=list)
    """kind=mix: the reasoning SFT JSONL files to merge with pipeline.extra_sft_files."""
    min_records: int = 0
    """kind=mix: repeat the records cyclically up to at least this many, so a small rejection-
    sampled set still fills global batches (recorded in the manifest); 0 = off."""
    nproc: int = 0
    """Processes for this step (torchrun when > 1); 0 = pipeline.nproc."""


@dataclass
class PipelineConfig:
    """A chain of stages run by one ``r1mega-train pipeline=NAME`` command."""

    name: Optional[str] = None
    """Pipeline name; null (pipeline=none) runs a single stage instead."""
    common: List[str] = field(default_factory=list)
    """Overrides applied to every stage step, before the step's own."""
    vars: Dict[str, Any] = field(default_factory=dict)
    """Tunables (step counts, learning rates, ...) referenced from steps via ${pipeline.vars.KEY}."""
    steps: List[StepConfig] = field(default_factory=list)
    """The steps, in order."""
    required: List[str] = field(default_factory=list)
    """Names of vars that must be given (not null or empty), e.g. the user's data files."""
    report: Dict[str, str] = field(default_factory=dict)
    """Evaluation table: model label -> 'step:summary_key' holding its eval (e.g. 'r1_zero:eval_after')."""
    nproc: int = 1
    """Processes per stage step (torchrun --nproc-per-node when > 1)."""
    launcher: str = "exec"
    """How a stage step starts: 'exec' (a new r1mega-train process, torchrun when nproc > 1) or
    'fork' (ranks forked from the orchestrator, which imports the heavy modules once; CPU runs
    only, see r1mega/pipeline/forked.py)."""
    extra_sft_files: List[str] = field(default_factory=list)
    """The user's non-reasoning SFT data (JSONL with prompt/response) mixed in by 'mix' steps."""
    extra_sft_ratio: float = 0.0
    """Share of the mixed SFT data taken from extra_sft_files (0 = reasoning data only)."""
    stop_after: Optional[str] = None
    """Stop after this step (later steps and the report are skipped)."""

    def validate(self, prefix: str = "pipeline") -> None:
        if not self.steps:
            raise ConfigError(f"{prefix}.steps is empty for pipeline.name={self.name!r}")
        seen: set = set()
        for i, s in enumerate(self.steps):
            where = f"{prefix}.steps[{i}]"
            if not NAME.match(s.name or "") or s.name == "pipeline":
                raise ConfigError(f"{where}.name={s.name!r} must be a plain directory name (not 'pipeline')")
            if s.name in seen:
                raise ConfigError(f"{where}.name={s.name!r} is used twice")
            seen.add(s.name)
            if s.kind not in KINDS:
                raise ConfigError(f"{where}.kind={s.kind!r} is not one of {KINDS}")
            if s.kind == "stage" and not any(o.split("=", 1)[0].lstrip("+~") == "stage" for o in s.overrides):
                raise ConfigError(f"{where}.overrides must choose a stage (stage=...)")
            if s.kind == "mix" and not s.inputs:
                raise ConfigError(f"{where}.inputs is empty (a mix step needs files to merge)")
            if s.nproc < 0 or s.min_records < 0:
                raise ConfigError(f"{where}.nproc and {where}.min_records must be >= 0")
        for key in self.required:
            if self.vars.get(key) in (None, "", "null", []):
                raise ConfigError(f"{prefix}.vars.{key} must be set for pipeline={self.name} "
                                 f"(r1mega-train pipeline={self.name} {prefix}.vars.{key}=...)")
        if self.nproc < 1:
            raise ConfigError(f"{prefix}.nproc must be >= 1, got {self.nproc}")
        if self.launcher not in ("exec", "fork"):
            raise ConfigError(f"{prefix}.launcher={self.launcher!r} is not one of exec, fork")
        if self.launcher == "fork" and not hasattr(os, "fork"):
            raise ConfigError(f"{prefix}.launcher=fork needs a system with fork(); use launcher=exec")
        if not 0 <= self.extra_sft_ratio < 1:
            raise ConfigError(f"{prefix}.extra_sft_ratio={self.extra_sft_ratio} must be in [0, 1)")
        if self.extra_sft_ratio > 0 and not self.extra_sft_files:
            raise ConfigError(f"{prefix}.extra_sft_ratio={self.extra_sft_ratio} but {prefix}.extra_sft_files is empty")
        for f in self.extra_sft_files if self.extra_sft_ratio > 0 else ():
            if not Path(f).expanduser().is_file():
                raise ConfigError(f"{prefix}.extra_sft_files: {f} does not exist")
        if self.stop_after is not None and self.stop_after not in seen:
            raise ConfigError(f"{prefix}.stop_after={self.stop_after!r} is not a step name")
        for label, ref in self.report.items():
            step, sep, key = str(ref).partition(":")
            if not sep or step not in seen or not key:
                raise ConfigError(f"{prefix}.report.{label}={ref!r} must be 'STEP:SUMMARY_KEY' naming a step")
