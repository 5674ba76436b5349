"""Run a function on N gloo ranks (one process each) and collect what rank 0 returns."""

from __future__ import annotations

import os
import pickle
import socket
import traceback

import torch.multiprocessing as mp


def world_size() -> int:
    """The WORLD_SIZE this rank was started with (1 outside :func:`run_ranks`)."""
    return int(os.environ.get("WORLD_SIZE", 1))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(parent, rank, world, port, fn, args, queue):
    from r1mega import lifeline

    lifeline.arm(parent)  # a killed test run leaves no rank behind
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    import warnings

    warnings.filterwarnings("ignore")
    try:
        # Plain pickle copies tensor data into the message; torch's queue reducer would send
        # shared-memory handles that break once this process exits.
        queue.put((rank, "ok", pickle.dumps(fn(*args))))
    except BaseException:
        queue.put((rank, "error", traceback.format_exc()))


def run_ranks(world: int, fn, *args, timeout: float = 300.0) -> dict:
    """``fn(*args)`` on ``world`` ranks; returns {rank: result}; raises on any rank's error."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_entry, args=(os.getpid(), r, world, port, fn, args, queue)) for r in range(world)]
    for p in procs:
        p.start()
    results = {}
    try:
        for _ in range(world):
            rank, status, out = queue.get(timeout=timeout)
            if status == "error":
                raise RuntimeError(f"rank {rank} failed:\n{out}")
            results[rank] = pickle.loads(out)
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    return results
