"""Run a function on N gloo ranks (fresh spawned processes) and collect every rank's result.

Each rank gets ``RANK``/``WORLD_SIZE``/``MASTER_ADDR``/``MASTER_PORT`` in its environment, so
code under test initialises exactly as under torchrun (``ParallelDims.build()`` reads them).
``fn`` must be a module-level function (spawn pickles it by name); its return value must be
picklable. A rank that raises fails the whole run with that rank's traceback.
"""

from __future__ import annotations

import os
import socket
import traceback

import torch.multiprocessing as mp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank: int, world: int, port: int, fn, args, queue) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    import warnings

    warnings.filterwarnings("ignore")
    try:
        queue.put((rank, "ok", fn(*args)))
    except BaseException:  # noqa: BLE001 - reported to the parent verbatim
        queue.put((rank, "error", traceback.format_exc()))


def run_ranks(world: int, fn, *args, timeout: float = 240.0) -> dict:
    """``{rank: fn(*args)}`` from ``world`` gloo ranks; RuntimeError with the traceback on failure."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=_entry, args=(r, world, port, fn, args, queue)) for r in range(world)]
    for p in procs:
        p.start()
    results = {}
    try:
        for _ in range(world):
            rank, status, out = queue.get(timeout=timeout)
            if status == "error":
                raise RuntimeError(f"rank {rank} failed:\n{out}")
            results[rank] = out
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    return results
