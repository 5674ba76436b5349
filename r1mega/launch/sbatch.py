"""Render ``launch/r1mega.sbatch.j2`` into one sbatch script per job (``cluster.submitter=sbatch``).

This is the launcher without NeMo-Run: a plain batch script a person can read, keep next to
the logs, and resubmit by hand. It does what the NeMo-Run path does:

* ``#SBATCH`` resources from the cluster config (one task per node; the GPUs belong to the
  node's torchrun), ``--requeue`` and ``--signal=B:USR1@<cluster.signal_seconds>``;
* the job environment (:mod:`r1mega.launch.environment`), a virtualenv if configured;
* ``launch/requeue.sh``: the USR1 trap that requeues the job before its time limit;
* ``srun`` (with pyxis ``--container-*`` flags when ``cluster.container_image`` is set)
  starting one ``torchrun`` per node, c10d rendezvous on the first node, rendezvous id the
  Slurm job id, then the trainer with the job's Hydra overrides.

Rendering is deterministic (no time stamps, no random ids), so dry runs can be compared
with golden files.
"""

from __future__ import annotations

import importlib.resources
import shlex
from pathlib import Path

from r1mega.launch.cluster import ClusterConfig
from r1mega.launch.environment import job_env
from r1mega.launch.jobs import Job, entrypoint

TEMPLATE = "r1mega.sbatch.j2"
REQUEUE_SNIPPET = "requeue.sh"
JOB_PREFIX = "r1mega-"


def templates_dir() -> Path:
    """``launch/`` of a source checkout, else the installed ``r1mega.launch_templates``."""
    checkout = Path(__file__).resolve().parents[2] / "launch"
    if (checkout / TEMPLATE).is_file():
        return checkout
    return Path(str(importlib.resources.files("r1mega.launch_templates")))


def requeue_snippet() -> str:
    return (templates_dir() / REQUEUE_SNIPPET).read_text().rstrip("\n")


def srun_flags(cluster: ClusterConfig) -> str:
    """srun options: fail the step when one node fails, pyxis container flags if any."""
    flags = ["--kill-on-bad-exit=1", "--wait=60"]
    if cluster.container_image:
        flags.append(f"--container-image={shlex.quote(cluster.container_image)}")
        if cluster.container_mounts:
            flags.append(f"--container-mounts={shlex.quote(','.join(cluster.container_mounts))}")
        if cluster.container_workdir:
            flags.append(f"--container-workdir={shlex.quote(cluster.container_workdir)}")
    return " ".join(flags)


def _extra_flags(cluster: ClusterConfig) -> list[str]:
    flags = []
    for key, value in sorted(cluster.sbatch_extra.items()):
        flag = "--" + str(key).replace("_", "-")
        flags.append(flag if value is True else f"{flag}={shlex.quote(str(value))}")
    return flags


def paths(cluster: ClusterConfig, experiment: str, job: Job) -> tuple[str, str]:
    """(script path, log directory) of a job on the cluster's file system."""
    base = f"{cluster.job_dir.rstrip('/')}/{experiment}"
    return f"{base}/{job.name}.sbatch", f"{base}/logs"


def render(cluster: ClusterConfig, experiment: str, job: Job) -> tuple[str, str]:
    """(script path, script text) for one job."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    script_path, log_dir = paths(cluster, experiment, job)
    text = env.get_template(TEMPLATE).render(
        job_name=JOB_PREFIX + job.name,
        script_path=script_path,
        log_dir=log_dir,
        account=shlex.quote(cluster.account),
        partition=shlex.quote(cluster.partition),
        qos=cluster.qos and shlex.quote(cluster.qos),
        nodes=cluster.nodes,
        gpus_per_node=cluster.gpus_per_node,
        cpus_per_task=cluster.cpus_per_task,
        mem=cluster.mem,
        time=cluster.time,
        exclusive=cluster.exclusive,
        requeue=cluster.requeue,
        signal_seconds=cluster.signal_seconds,
        extra_flags=_extra_flags(cluster),
        env=[(k, shlex.quote(v)) for k, v in job_env(cluster.env).items()],
        venv=cluster.venv and shlex.quote(cluster.venv),
        requeue_snippet=requeue_snippet(),
        rdzv_port=cluster.rdzv_port,
        srun_flags=srun_flags(cluster),
        entry=" ".join(shlex.quote(a) for a in entrypoint(cluster).torchrun_args()),
        args=[shlex.quote(a) for a in job.args],
    )
    return script_path, text
