"""Small collectives every stage needs: who logs, and last-pipeline-stage results made global."""

from __future__ import annotations

import torch.distributed as dist


def is_logging_rank() -> bool:
    """Global rank 0 (or a single process) writes run files and logs."""
    return not dist.is_initialized() or dist.get_rank() == 0


def broadcast_from_last_stage(obj):
    """``obj`` computed on the last pipeline stage (e.g. loss metrics), made visible on every
    stage of this rank's pipeline group (a no-op without pipeline parallelism)."""
    from megatron.core import parallel_state as ps

    if ps.get_pipeline_model_parallel_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(
        box, src=ps.get_pipeline_model_parallel_last_rank(), group=ps.get_pipeline_model_parallel_group()
    )
    return box[0]
