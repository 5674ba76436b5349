"""Which device this process computes on: its current CUDA device, or the CPU without CUDA."""

from __future__ import annotations

from typing import Optional

import torch


def cuda_device_or_none() -> Optional[torch.device]:
    """The current CUDA device, or None without CUDA (for ``device=`` arguments that default to CPU)."""
    return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else None


def device() -> torch.device:
    """The current CUDA device, else the CPU."""
    return cuda_device_or_none() or torch.device("cpu")


def on_gpu() -> bool:
    """Whether this process computes on a CUDA device."""
    return torch.cuda.is_available()
