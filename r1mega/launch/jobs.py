"""From sweep points to jobs: names, run directories and the ``r1mega-train`` arguments.

Every job runs ``<entrypoint> <the point's overrides> hydra.run.dir=<run dir>`` under
torchrun. The run directory (and, when ``cluster.checkpoint_dir`` is set, the checkpoint
directory) is fixed here, before submission, so that a job Slurm requeues restarts in the
same place and ``r1mega-train`` resumes from ``<checkpoint dir>/latest``.

``cluster.entrypoint`` is either an executable (``r1mega-train``, started with
``torchrun --no-python``) or ``python -m <module>`` (started with ``torchrun -m <module>``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from r1mega.config.errors import ConfigError
from r1mega.launch.cluster import ClusterConfig
from r1mega.launch.sweep import Point, is_sweep, run_dir
from r1mega.config.overrides import split

CHECKPOINT_KEY = "trainer.checkpoint_dir"
"""The r1mega-train key that sets the checkpoint directory (passed only when
cluster.checkpoint_dir is set)."""
RUN_DIR_KEY = "hydra.run.dir"


@dataclass(frozen=True)
class Job:
    """One submission: one sweep point on the cluster's nodes."""

    name: str
    """Job / task name (Slurm job name without prefix)."""
    point: Point
    """The sweep point it runs."""
    run_dir: str
    """hydra.run.dir of r1mega-train."""
    checkpoint_dir: Optional[str]
    """Checkpoint directory passed as trainer.checkpoint_dir, or None (trainer default)."""
    args: tuple[str, ...]
    """r1mega-train's Hydra overrides, unquoted."""


@dataclass(frozen=True)
class Entrypoint:
    """How torchrun starts the trainer."""

    module: Optional[str]
    """Module for 'torchrun -m', or None."""
    executable: Optional[str]
    """Executable for 'torchrun --no-python', or None."""

    def torchrun_args(self) -> list[str]:
        return ["-m", self.module] if self.module else ["--no-python", self.executable]


def entrypoint(cluster: ClusterConfig) -> Entrypoint:
    words = cluster.entrypoint.split()
    if len(words) == 3 and words[0].startswith("python") and words[1] == "-m":
        return Entrypoint(module=words[2], executable=None)
    if len(words) != 1:
        raise ConfigError(f"cluster.entrypoint={cluster.entrypoint!r} must be an executable or 'python -m <module>'")
    return Entrypoint(module=None, executable=words[0])


def default_name(overrides: list[str]) -> str:
    """``<stage>-<model>`` from the overrides (the parts given), else ``r1mega``."""
    values = dict(split(o) for o in overrides if "=" in o and not o.startswith("~"))
    parts = [values[k] for k in ("stage", "model") if k in values and "," not in values[k]]
    return sanitize("-".join(parts) or "r1mega")


def sanitize(name: str) -> str:
    """Keep names safe for Slurm job names and paths."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "r1mega"


def build_jobs(cluster: ClusterConfig, name: str, points: list[Point]) -> list[Job]:
    """One job per point, each with its run (and checkpoint) directory in its arguments."""
    sweep = is_sweep(points)
    jobs = []
    for point in points:
        args = list(point.train_overrides)
        given = [split(a)[1] for a in args if split(a)[0] == RUN_DIR_KEY]
        if given and sweep:
            raise ConfigError(f"{RUN_DIR_KEY} is set per sweep point from cluster.runs_dir; do not pass it with -m")
        rdir = given[0] if given else run_dir(cluster.runs_root, name, point, sweep)
        if not given:
            args.append(f"{RUN_DIR_KEY}={rdir}")
        ckpt = None
        if cluster.checkpoint_dir:
            suffix = f"{name}/{point.index}" if sweep else name
            ckpt = f"{cluster.checkpoint_dir.rstrip('/')}/{suffix}"
            args.append(f"{CHECKPOINT_KEY}={ckpt}")
        job_name = f"{name}-{point.index}" if sweep else name
        jobs.append(Job(job_name, point, rdir, ckpt, tuple(args)))
    return jobs
