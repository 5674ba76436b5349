"""``ClusterConfig``: where and how an r1mega job runs (the ``cluster=`` config group).

A cluster config answers the questions a training config must not: which Slurm account and
partition, how many nodes of how many GPUs, for how long, inside which container (pyxis) or
virtualenv, where job scripts, logs, run directories and checkpoints go, and how to reach
the cluster (run on its login node, or over SSH from a laptop). ``conf/cluster/*.yaml`` hold
examples; ``r1mega-launch cluster=<name> cluster.nodes=4 ...`` picks and overrides one.

Two executors:

* ``slurm``: one sbatch job per run (per sweep point), N nodes x G GPUs, ``srun`` starts one
  ``torchrun`` per node, rendezvous over c10d on the first node; requeued before the time
  limit and on preemption, resuming from the newest checkpoint;
* ``local``: ``torchrun --nproc-per-node=G`` on this machine (one node).

``validate()`` raises ValueError naming the key (``cluster.partition``) before anything is
rendered or submitted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from r1mega.config.errors import ConfigError
from r1mega.plan.gpus import GPUS
from r1mega.plan.sources import group_file, load_yaml

EXECUTORS = ("slurm", "local")
SUBMITTERS = ("nemo_run", "sbatch")
TUNNELS = ("local", "ssh")
PACKAGERS = ("none", "git")
_TIME = re.compile(r"^(\d+-)?\d{1,2}:\d{2}:\d{2}$")


@dataclass
class ClusterConfig:
    """Resources, software environment and paths of one launch target."""

    executor: str = "local"
    """slurm (sbatch jobs through Slurm) or local (torchrun on this machine)."""
    submitter: str = "nemo_run"
    """slurm only: nemo_run (a NeMo-Run experiment with run.SlurmExecutor, also over SSH) or
    sbatch (render launch/r1mega.sbatch.j2 and call sbatch here, no NeMo-Run needed)."""
    account: Optional[str] = None
    """Slurm account (#SBATCH --account); required for slurm."""
    partition: Optional[str] = None
    """Slurm partition (#SBATCH --partition); required for slurm."""
    qos: Optional[str] = None
    """Slurm quality of service (#SBATCH --qos); null leaves the cluster default."""
    nodes: int = 1
    """Nodes per job."""
    gpus_per_node: int = 8
    """GPUs per node = training processes per node (processes per node for local CPU runs)."""
    gpu_type: str = "h100"
    """GPU model, for the preflight planner: h100, h200 or a100."""
    time: str = "04:00:00"
    """Wall-clock limit per job, [D-]HH:MM:SS; the job requeues itself before it runs out."""
    exclusive: bool = True
    """Ask for whole nodes (#SBATCH --exclusive)."""
    mem: Optional[str] = None
    """Host memory per node (#SBATCH --mem), e.g. 0 for all of it; null leaves the default."""
    cpus_per_task: Optional[int] = None
    """CPU cores for each node's torchrun (#SBATCH --cpus-per-task); null leaves the default."""
    sbatch_extra: dict[str, Any] = field(default_factory=dict)
    """More #SBATCH flags, {flag: value} (true for a bare flag), e.g. {constraint: gpu80}."""

    container_image: Optional[str] = None
    """Container image for pyxis/enroot (srun --container-image), e.g. a .sqsh file or
    nvcr.io/...; null runs on the host (see venv)."""
    container_mounts: list[str] = field(default_factory=list)
    """Bind mounts SRC:DST for the container (srun --container-mounts)."""
    container_workdir: Optional[str] = None
    """Working directory inside the container (sbatch submitter); null keeps the image's."""
    venv: Optional[str] = None
    """Virtualenv to activate on the nodes when no container is used (its bin/activate)."""
    entrypoint: str = "r1mega-train"
    """The training command: an executable (r1mega-train) or 'python -m <module>'."""
    env: dict[str, str] = field(default_factory=dict)
    """Environment variables for the job; they override the defaults of
    r1mega.launch.environment (e.g. NCCL_NVLS_ENABLE: '1' to turn NVLink SHARP back on)."""

    job_dir: str = "./r1mega_jobs"
    """Root for job scripts and Slurm logs on the cluster's shared file system."""
    runs_dir: Optional[str] = None
    """Root of the run directories (hydra.run.dir of each run / sweep point); null means
    <job_dir>/runs."""
    checkpoint_dir: Optional[str] = None
    """Root for checkpoints, one sub-directory per run; null lets r1mega-train keep them in
    its run directory."""

    requeue: bool = True
    """Requeue the job on preemption and before the time limit (#SBATCH --requeue plus a USR1
    trap); the requeued job resumes from the newest checkpoint."""
    signal_seconds: int = 120
    """How long before the time limit Slurm sends USR1 (#SBATCH --signal=B:USR1@<n>)."""
    retries: int = 0
    """Requeues after a failed exit (NeMo-Run's TORCHX_MAX_RETRIES)."""
    rdzv_port: int = 29500
    """Port of the c10d rendezvous on the first node."""

    tunnel: str = "local"
    """How to reach Slurm: local (this machine is a login node) or ssh."""
    ssh_host: Optional[str] = None
    """Login node for tunnel=ssh."""
    ssh_user: Optional[str] = None
    """User name for tunnel=ssh."""
    ssh_identity: Optional[str] = None
    """Private key file for tunnel=ssh; null uses the SSH agent / default keys."""
    packager: str = "none"
    """How NeMo-Run ships code: none (the image/venv has r1mega installed) or git (a git
    archive of this checkout, extracted into the job directory)."""

    def validate(self) -> "ClusterConfig":
        """Raise ValueError naming the first bad key; return self."""
        _choice("executor", self.executor, EXECUTORS)
        _choice("submitter", self.submitter, SUBMITTERS)
        _choice("tunnel", self.tunnel, TUNNELS)
        _choice("packager", self.packager, PACKAGERS)
        if self.gpu_type not in GPUS:
            raise ConfigError(f"cluster.gpu_type={self.gpu_type!r} is not one of {sorted(GPUS)}")
        for key in ("nodes", "gpus_per_node", "signal_seconds", "rdzv_port"):
            if getattr(self, key) < 1:
                raise ConfigError(f"cluster.{key} must be >= 1, got {getattr(self, key)}")
        if self.retries < 0:
            raise ConfigError(f"cluster.retries must be >= 0, got {self.retries}")
        if not _TIME.match(str(self.time)):
            raise ConfigError(f"cluster.time={self.time!r} is not [D-]HH:MM:SS")
        if not self.entrypoint.strip():
            raise ConfigError("cluster.entrypoint must name the training command")
        if self.container_image and self.venv:
            raise ConfigError("set cluster.container_image or cluster.venv, not both")
        if self.executor == "slurm":
            self._validate_slurm()
        elif self.nodes != 1:
            raise ConfigError(f"cluster.nodes={self.nodes}: executor=local runs on one node")
        return self

    def _validate_slurm(self) -> None:
        for key in ("account", "partition"):
            if not getattr(self, key):
                raise ConfigError(f"cluster.{key} must be set when cluster.executor=slurm")
        if self.tunnel == "ssh":
            for key in ("ssh_host", "ssh_user"):
                if not getattr(self, key):
                    raise ConfigError(f"cluster.{key} must be set when cluster.tunnel=ssh")
            if self.submitter == "sbatch":
                raise ConfigError("cluster.submitter=sbatch runs sbatch on this machine; use cluster.tunnel=local")

    @property
    def world_size(self) -> int:
        return self.nodes * self.gpus_per_node

    @property
    def runs_root(self) -> str:
        return self.runs_dir or f"{self.job_dir.rstrip('/')}/runs"


def _choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"cluster.{key}={value!r} is not one of {list(choices)}")


def load_cluster(choice: str, overrides: list[str]) -> ClusterConfig:
    """``conf/cluster/<choice>.yaml`` (or a YAML path) + ``cluster.key=value`` overrides."""
    values = load_yaml(group_file("cluster", choice))
    env = {o.split("=", 1)[0][len("env."):]: o.split("=", 1)[1] for o in overrides if o.startswith("env.") and "=" in o}
    rest = [o for o in overrides if not (o.startswith("env.") and "=" in o)]
    try:
        merged = OmegaConf.merge(OmegaConf.structured(ClusterConfig), values)
        if rest:
            merged = OmegaConf.merge(merged, OmegaConf.from_dotlist(rest))
        for key, raw in env.items():  # environment values stay the strings typed ('yes', '01')
            merged.env[key] = raw
        cluster: ClusterConfig = OmegaConf.to_object(merged)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or getattr(err, "key", None) or "?"
        raise ConfigError(f"cluster.{key}: {str(err).splitlines()[0]}") from None
    return cluster.validate()
