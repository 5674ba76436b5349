"""Jobs -> a NeMo-Run experiment: ``run.SlurmExecutor`` on a cluster, ``run.LocalExecutor`` here.

One :class:`nemo_run.Experiment` per launch, one task per sweep point (``exp.add`` of a
single task gives each its own sbatch job). Each task is a ``run.Script`` of the trainer,
started by NeMo-Run's ``torchrun`` launcher: ``--nnodes=<cluster.nodes>``
``--nproc-per-node=<cluster.gpus_per_node>``, c10d rendezvous on the head node's address.

Slurm specifics, all from the cluster config:

* resources and pyxis container flags map to ``SlurmExecutor`` fields one to one;
* ``--requeue`` goes in ``additional_parameters``, ``--signal=B:USR1@<n>`` in ``signal``;
* ``launch/requeue.sh`` becomes ``setup_lines``: NeMo-Run's template runs the training
  ``srun`` in the foreground, so the snippet's ``srun`` wrapper is what lets the USR1 trap
  fire in time;
* environment variables go in ``env_vars`` (NeMo-Run exports them in the script);
* with ``tunnel=local`` the experiment's files live under ``<job_dir>/experiments`` (the
  directory sbatch reads them from); with ``tunnel=ssh`` NeMo-Run copies them there.

NeMo-Run prints progress through its own console; that chatter goes to stderr here so that
``--dryrun`` prints nothing but the scripts. The rendezvous id is derived from the task's
name, not drawn at random, so a dry run is reproducible.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import zlib
from typing import Any

from r1mega.launch.cluster import ClusterConfig
from r1mega.launch.environment import job_env, local_env
from r1mega.launch.jobs import Job, entrypoint
from r1mega.launch.sbatch import JOB_PREFIX, requeue_snippet


def _script(cluster: ClusterConfig, job: Job):
    import nemo_run as run

    entry = entrypoint(cluster)
    if entry.module:
        return run.Script(path=entry.module, args=list(job.args), entrypoint="python", m=True)
    return run.Script(path=entry.executable, args=list(job.args))


def _torchrun(cluster: ClusterConfig, job: Job):
    import nemo_run as run

    return run.Torchrun(rdzv_backend="c10d", rdzv_port=cluster.rdzv_port, rdzv_id=zlib.crc32(job.name.encode()) % 10000 + 1)


def _tunnel(cluster: ClusterConfig):
    import nemo_run as run

    if cluster.tunnel == "ssh":
        return run.SSHTunnel(host=cluster.ssh_host, user=cluster.ssh_user, job_dir=cluster.job_dir,
                             identity=cluster.ssh_identity)
    return run.LocalTunnel(job_dir=os.path.join(cluster.job_dir, "experiments"))


def _setup_lines(cluster: ClusterConfig) -> str | None:
    lines = []
    if cluster.venv:
        lines.append(f"source {cluster.venv}/bin/activate")
    if cluster.requeue:
        lines.append(requeue_snippet())
    return "\n".join(lines) or None


def slurm_executor(cluster: ClusterConfig, job: Job):
    import nemo_run as run

    extra: dict[str, Any] = dict(cluster.sbatch_extra)
    if cluster.requeue:
        extra["requeue"] = True
    return run.SlurmExecutor(
        account=cluster.account, partition=cluster.partition, qos=cluster.qos,
        nodes=cluster.nodes, ntasks_per_node=cluster.gpus_per_node, gpus_per_node=cluster.gpus_per_node,
        cpus_per_task=cluster.cpus_per_task, mem=cluster.mem, time=cluster.time,
        exclusive=True if cluster.exclusive else None,
        signal=f"B:USR1@{cluster.signal_seconds}" if cluster.requeue else None,
        additional_parameters=extra or None,
        container_image=cluster.container_image, container_mounts=list(cluster.container_mounts),
        job_name_prefix=JOB_PREFIX, env_vars=job_env(cluster.env), setup_lines=_setup_lines(cluster),
        tunnel=_tunnel(cluster), launcher=_torchrun(cluster, job), retries=cluster.retries,
        packager=run.GitArchivePackager() if cluster.packager == "git" else run.Packager(),
        poll_estimated_start_time=False,
    )


def local_executor(cluster: ClusterConfig, job: Job):
    import nemo_run as run

    return run.LocalExecutor(ntasks_per_node=cluster.gpus_per_node, launcher=_torchrun(cluster, job),
                             env_vars=local_env(cluster.env))


def executor(cluster: ClusterConfig, job: Job):
    return slurm_executor(cluster, job) if cluster.executor == "slurm" else local_executor(cluster, job)


@contextlib.contextmanager
def _quiet(verbose: bool):
    """Send NeMo-Run's console output to stderr (or nowhere)."""
    sink = sys.stderr if verbose else io.StringIO()
    with contextlib.redirect_stdout(sink):
        yield


def experiment(cluster: ClusterConfig, title: str, exp_id: str, jobs: list[Job], base_dir: str | None):
    """The experiment with one task per job (enter it with ``with``)."""
    import nemo_run as run

    if base_dir is None and cluster.tunnel == "local":
        base_dir = cluster.job_dir  # sbatch (and local runs) read the experiment's files there
    exp = run.Experiment(title, id=exp_id, base_dir=base_dir, log_level="WARN", clean_mode=True,
                         enable_goodbye_message=False)
    return exp


def dryrun(cluster: ClusterConfig, title: str, exp_id: str, jobs: list[Job], scratch: str, verbose: bool = False) -> list[str]:
    """The exact submission of each job, as text: ``sbatch ... <script>`` then the script."""
    with _quiet(verbose):
        exp = experiment(cluster, title, exp_id, jobs, base_dir=scratch)
        with exp:
            for job in jobs:
                exp.add(_script(cluster, job), executor=executor(cluster, job), name=job.name)
            exp.dryrun(log=False, delete_exp_dir=True)
            return [_describe(job._dryrun_info, cluster) for job in exp.jobs]


def _describe(info, cluster: ClusterConfig) -> str:
    if cluster.executor != "slurm":
        return str(info)
    req = info.request
    path = os.path.join(req.executor.tunnel.job_dir, f"{req.executor.job_name}_sbatch.sh")
    return f"$ {' '.join(req.launch_cmd + [path])}\n{req.materialize()}"


def submit(cluster: ClusterConfig, title: str, exp_id: str, jobs: list[Job], wait: bool, verbose: bool = False) -> dict[str, str]:
    """Submit every job; with ``wait`` (always for local runs) block until they end.

    Returns ``{job name: final state}`` (``SUBMITTED`` for detached Slurm jobs).
    """
    detach = cluster.executor == "slurm" and not wait
    with _quiet(verbose):
        exp = experiment(cluster, title, exp_id, jobs, base_dir=None)
        with exp:
            for job in jobs:
                exp.add(_script(cluster, job), executor=executor(cluster, job), name=job.name)
            # local points share this machine's GPUs: one after the other
            exp.run(sequential=cluster.executor == "local", detach=detach, tail_logs=False)
    return {job.id: getattr(job.state, "name", str(job.state)) for job in exp.jobs}
