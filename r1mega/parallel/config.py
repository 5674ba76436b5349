"""Parallel layout as the user writes it (``parallel=`` group)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass
class ParallelConfig:
    """Sizes of each parallel dimension. Their product with DP must equal the world size."""

    tp: int = 1
    """Tensor parallel size (attention heads and MLP columns are split over it)."""
    pp: int = 1
    """Pipeline parallel size (layers are split into this many stages)."""
    vpp: Optional[int] = None
    """Virtual pipeline stages per rank (interleaved schedule); None disables."""
    ep: int = 1
    """Expert parallel size (routed experts are split over it)."""
    etp: int = 1
    """Expert tensor parallel size (each expert's MLP split over it)."""
    cp: int = 1
    """Context parallel size (sequence split for attention; needs the TE spec)."""
    dp: int = -1
    """Data parallel size; -1 means world_size / (tp * pp * cp)."""
    sequence_parallel: Optional[bool] = None
    """Megatron sequence parallelism; None means on whenever tp > 1 (MoE with TP needs it)."""
    distributed_optimizer: bool = True
    """Shard optimizer states over data-parallel ranks (ZeRO-1)."""
    backend: str = "auto"
    """Process-group backend: nccl, gloo, or auto (nccl with CUDA, gloo without)."""
