"""Checks ``r1mega-launch`` runs on every job before anything is submitted.

1. The layout against the cluster (always, even with ``--skip-plan``): the ``parallel.*``,
   ``model=`` and ``plan.*`` overrides on ``cluster.nodes * cluster.gpus_per_node`` GPUs, through
   ``ParallelDims.resolve`` (via the planner's layout module, so uneven pipeline splits are
   understood), and tensor parallelism must stay inside a node. Without ``model=`` only the
   model-independent checks run here.
2. The memory estimate (unless ``--skip-plan``): the job's ``r1mega-train`` configuration is
   composed with Hydra (:mod:`r1mega.launch.trainconf`: unknown keys and missing config groups
   fail here), its model, layout, batch, sequence length and precision become the plan,
   ``plan.*`` overrides go on top, and the planner of :mod:`r1mega.plan` runs with the
   cluster's nodes, GPUs and GPU type. A job that does not fit stops the launch.

Every failure is one ValueError naming the cluster keys and the offending training keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from r1mega.config.errors import ConfigError
from r1mega.config.overrides import split
from r1mega.launch.cluster import ClusterConfig
from r1mega.launch.jobs import Job
from r1mega.launch.trainconf import compose, plan_base
from r1mega.parallel.dims import ParallelDims
from r1mega.plan.estimate import Estimate, estimate
from r1mega.plan.layout import resolve
from r1mega.plan.overrides import plan_config, plan_from_overrides


@dataclass(frozen=True)
class Preflight:
    """What the checks found for one job."""

    job: Job
    estimate: Optional[Estimate]
    """The memory estimate, or None when skipped or impossible."""
    note: str = ""
    """Why there is no estimate, if there is none."""

    @property
    def fits(self) -> bool:
        return self.estimate is None or self.estimate.fits


def _cluster_base(cluster: ClusterConfig) -> dict:
    return {"nodes": cluster.nodes, "gpus_per_node": cluster.gpus_per_node, "gpu": cluster.gpu_type}


def _world(cluster: ClusterConfig) -> str:
    return (f"cluster.nodes*cluster.gpus_per_node = {cluster.nodes}*{cluster.gpus_per_node} "
            f"= {cluster.world_size} GPUs")


def _check_node_fit(cluster: ClusterConfig, tp: int) -> None:
    if tp > cluster.gpus_per_node:
        raise ConfigError(f"parallel.tp={tp} is larger than cluster.gpus_per_node={cluster.gpus_per_node}: "
                         "tensor parallelism must stay inside a node")
    if cluster.gpus_per_node % tp:
        raise ConfigError(f"parallel.tp={tp} does not divide cluster.gpus_per_node={cluster.gpus_per_node}: "
                         "a tensor-parallel group would straddle two nodes")


def check_layout(cluster: ClusterConfig, job: Job) -> None:
    """Tier 1: the layout the overrides ask for, on the cluster's GPUs (no trainer config)."""
    overrides = list(job.point.overrides)
    plan, model = plan_from_overrides(overrides, base=_cluster_base(cluster), strict=False)
    _check_node_fit(cluster, plan.parallel.tp)
    if any(split(o)[0] == "model" for o in overrides if "=" in o and not o.startswith("~")):
        resolve(plan.validate(), model)
    else:  # the trainer's default model is only known once its config is composed
        ParallelDims.resolve(plan.parallel, cluster.world_size)


def estimate_job(cluster: ClusterConfig, job: Job) -> Estimate:
    """Tier 2: compose the job's r1mega-train config, put plan.* on top, estimate."""
    config = compose(job.point.train_overrides)
    plan, _, _ = plan_config(job.point.plan_overrides, base={**_cluster_base(cluster), **plan_base(config)})
    _check_node_fit(cluster, plan.parallel.tp)
    return estimate(plan, config.model)


def check_job(cluster: ClusterConfig, job: Job, plan_memory: bool) -> Preflight:
    """Validate one job's layout on the cluster and (optionally) estimate its memory."""
    try:
        check_layout(cluster, job)
        if not plan_memory:
            return Preflight(job, None, "memory estimate skipped (--skip-plan)")
        return Preflight(job, estimate_job(cluster, job))
    except ValueError as err:
        raise ConfigError(f"job {job.name}: {_world(cluster)}: {err}") from None
