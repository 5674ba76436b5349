"""Helpers for tests that need several processes (gloo, CPU): a free port and a spawn wrapper.

Workers must be module-level functions of a test module (spawn pickles them by name); they
receive ``(rank, world_size, port, out_dir, *args)`` and report by writing files into
``out_dir`` that the parent reads back with ``torch.load``.
"""

from __future__ import annotations

import os
import socket

import torch.distributed as dist
import torch.multiprocessing as mp


def free_port() -> int:
    """A TCP port the OS considers free now (bind to port 0, read it, release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def init_gloo(rank: int, world_size: int, port: int) -> None:
    """Join a gloo process group on localhost (called inside a worker)."""
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)


def _entry(rank, fn, world_size, port, out_dir, args):
    fn(rank, world_size, port, out_dir, *args)


def spawn(fn, world_size: int, out_dir: str, *args) -> None:
    """Run ``fn(rank, world_size, port, out_dir, *args)`` in ``world_size`` fresh processes."""
    mp.spawn(_entry, args=(fn, world_size, free_port(), str(out_dir), args), nprocs=world_size, join=True)
