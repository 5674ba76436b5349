"""Start-up and wrap-up shared by every stage: process groups, seeds, run-dir files."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import torch
import torch.distributed as dist

from r1mega.config.schema import R1Config
from r1mega.parallel.dims import ParallelDims


def is_logging_rank() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def start(cfg: R1Config, dims: ParallelDims) -> Path:
    """Build process groups, seed everything, agree on one run dir; return it."""
    dims.build(cfg.parallel.backend, seed=cfg.trainer.seed)
    random.seed(cfg.trainer.seed)
    torch.manual_seed(cfg.trainer.seed)
    run_dir = [cfg.run_dir]
    if dist.get_world_size() > 1:  # ranks may have composed a different ${now}; rank 0 decides
        dist.broadcast_object_list(run_dir, src=0)
    cfg.run_dir = run_dir[0]
    path = Path(cfg.run_dir)
    if is_logging_rank():
        path.mkdir(parents=True, exist_ok=True)
        from omegaconf import OmegaConf

        (path / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.structured(cfg)))
    return path


def checkpoint_dir(cfg: R1Config) -> Path:
    return Path(cfg.trainer.checkpoint_dir or Path(cfg.run_dir) / "checkpoints")


def broadcast_from_last_stage(metrics: dict) -> dict:
    """Metrics computed on the last pipeline stage, made visible on every stage."""
    from megatron.core import parallel_state as ps

    if ps.get_pipeline_model_parallel_world_size() == 1:
        return metrics
    box = [metrics]
    dist.broadcast_object_list(
        box, src=ps.get_pipeline_model_parallel_last_rank(), group=ps.get_pipeline_model_parallel_group()
    )
    return box[0]


def finish() -> None:
    from megatron.core import parallel_state as ps

    if dist.is_initialized():
        dist.barrier()
        ps.destroy_model_parallel()
        dist.destroy_process_group()


def describe_dims(dims: ParallelDims) -> dict:
    return dataclasses.asdict(dims)


def dump_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, default=str) + "\n")
