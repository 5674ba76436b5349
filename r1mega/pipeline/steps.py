"""A pipeline step, made concrete: its directory, final overrides, command and fingerprint.

Overrides of a stage step are merged from three lists -- ``pipeline.common``, the overrides
typed on the pipeline's command line, and the step's own -- keeping the *last* value of each
key (Hydra itself refuses a group chosen twice), then ``@{...}`` references are replaced by
directories. Every step runs with ``pipeline=none`` (it is a stage, not a pipeline) and its own
``hydra.run.dir``; with more than one process it is started by torchrun.

The fingerprint is the resolved override list: DONE.json records it, and a rerun whose
fingerprint differs refuses to skip the step silently (see :mod:`r1mega.pipeline.state`).
"""

from __future__ import annotations

import re
import socket
import sys
from pathlib import Path

from r1mega.config.errors import ConfigError
from r1mega.pipeline.config import PipelineConfig, StepConfig
from r1mega.config.overrides import override_key

REF = re.compile(r"@\{([^}]*)\}")


def substitute(text: str, pipeline_dir: Path, names: set) -> str:
    """Replace @{step} with that step's directory and @{pipeline} with the pipeline directory."""

    def repl(m: re.Match) -> str:
        name = m.group(1)
        if name == "pipeline":
            return str(pipeline_dir)
        if name not in names:
            raise ConfigError(f"pipeline: unknown reference @{{{name}}} in {text!r} (steps: {sorted(names)})")
        return str(pipeline_dir / name)

    return REF.sub(repl, text)


def merge_overrides(*lists: list) -> list:
    """Concatenate override lists keeping only the last value of each key, in order of last use."""
    last: dict = {}
    for lst in lists:
        for o in lst:
            key = override_key(o)
            last.pop(key, None)
            last[key] = o
    return list(last.values())


def forwarded(overrides) -> list:
    """Command-line overrides that every step inherits (all but pipeline.* and hydra.*)."""
    keep = []
    for o in overrides or ():
        key = override_key(o)
        if key == "pipeline" or key.startswith(("pipeline.", "hydra.")):
            continue
        keep.append(o)
    return keep


def stage_overrides(pcfg: PipelineConfig, step: StepConfig, pipeline_dir: Path, cli: list) -> list:
    names = {s.name for s in pcfg.steps}
    merged = merge_overrides(pcfg.common, cli, step.overrides, ["pipeline=none"])
    return [substitute(o, pipeline_dir, names) for o in merged]


def shadowed(pcfg: PipelineConfig, cli: list) -> dict:
    """Command-line overrides that a step replaces with its own: {step name: [keys]}."""
    given = {override_key(o) for o in cli}
    out = {}
    for step in pcfg.steps:
        keys = [k for k in dict.fromkeys(override_key(o) for o in step.overrides) if k in given]
        if step.kind == "stage" and keys:
            out[step.name] = keys
    return out


def mix_inputs(pcfg: PipelineConfig, step: StepConfig, pipeline_dir: Path) -> list:
    names = {s.name for s in pcfg.steps}
    return [substitute(p, pipeline_dir, names) for p in step.inputs]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stage_argv(overrides: list, step_dir: Path) -> list:
    """The ``r1mega-train`` arguments of one stage step."""
    return [*overrides, f"hydra.run.dir={step_dir}"]


def command(overrides: list, step_dir: Path, nproc: int) -> list:
    """The argv that runs one stage step as a new process (``pipeline.launcher=exec``)."""
    if nproc > 1:
        head = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
                "--master-port", str(free_port()), "-m", "r1mega.cli.train"]
    else:
        head = [sys.executable, "-m", "r1mega.cli.train"]
    return [*head, *stage_argv(overrides, step_dir)]
