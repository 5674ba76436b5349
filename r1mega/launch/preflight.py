"""Checks ``r1mega-launch`` runs on every job before anything is submitted.

1. The layout against the cluster (always): ``ParallelDims.resolve`` on the world size
   ``cluster.nodes * cluster.gpus_per_node`` (through the planner's layout module, so uneven
   pipeline splits are understood), and tensor parallelism must stay inside a node. A
   failure is a ValueError naming both the cluster keys and the ``parallel.*`` keys.
2. The memory estimate (unless ``--skip-plan``): the planner of :mod:`r1mega.plan` with the
   cluster's nodes, GPUs and GPU type, the point's ``model=`` / ``parallel.*`` / batch /
   precision overrides and its ``plan.*`` keys. A job that does not fit stops the launch.

A point without ``model=`` cannot be planned (the trainer's default model is not known
here); its layout is still checked without the model-dependent checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from r1mega.launch.cluster import ClusterConfig
from r1mega.launch.jobs import Job
from r1mega.plan.estimate import Estimate, estimate
from r1mega.plan.layout import resolve
from r1mega.plan.overrides import plan_from_overrides, split


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


def check_job(cluster: ClusterConfig, job: Job, plan_memory: bool) -> Preflight:
    """Validate one job's layout on the cluster and (optionally) estimate its memory."""
    overrides = list(job.point.overrides)
    has_model = any(split(o)[0] == "model" for o in overrides if "=" in o and not o.startswith("~"))
    try:
        plan, model = plan_from_overrides(overrides, base=_cluster_base(cluster), strict=False)
        tp = plan.parallel.tp
        if tp > cluster.gpus_per_node:
            raise ValueError(f"parallel.tp={tp} is larger than cluster.gpus_per_node={cluster.gpus_per_node}: "
                             "tensor parallelism must stay inside a node")
        if cluster.gpus_per_node % tp:
            raise ValueError(f"parallel.tp={tp} does not divide cluster.gpus_per_node={cluster.gpus_per_node}: "
                             "a tensor-parallel group would straddle two nodes")
        if not has_model:
            from r1mega.parallel.dims import ParallelDims

            ParallelDims.resolve(plan.parallel, cluster.world_size)
            return Preflight(job, None, "no model= override: memory not estimated")
        if not plan_memory:
            resolve(plan.validate(), model)
            return Preflight(job, None, "memory estimate skipped (--skip-plan)")
        return Preflight(job, estimate(plan, model))
    except ValueError as err:
        raise ValueError(f"job {job.name}: {_world(cluster)}: {err}") from None
