"""Memory of the GPU types the planner knows.

Capacities are what ``nvidia-smi`` reports as total memory (MiB), not the marketing number:
an "80 GB" H100 SXM shows 81559 MiB (79.6 GiB), an H200 143771 MiB (140.4 GiB), an A100
80GB 81920 MiB (80 GiB). The planner compares its estimate with these.
"""

from __future__ import annotations

from dataclasses import dataclass

GIB = 1024**3
MIB = 1024**2


@dataclass(frozen=True)
class GPU:
    """One GPU type."""

    name: str
    """Display name."""
    memory_mib: int
    """Total device memory as nvidia-smi reports it, in MiB."""

    @property
    def memory_bytes(self) -> int:
        return self.memory_mib * MIB


GPUS: dict[str, GPU] = {
    "h100": GPU("H100 80GB", 81559),
    "h200": GPU("H200 141GB", 143771),
    "a100": GPU("A100 80GB", 81920),
}
