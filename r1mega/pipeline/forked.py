"""Start a step's ranks by forking the orchestrator (``pipeline.launcher=fork``).

A fresh ``python -m r1mega.cli.train`` spends about ten seconds of a CPU core importing torch,
Megatron-Core, transformers and matplotlib before it reads its configuration, and the tiny
pipeline starts thirteen of them. With this launcher the orchestrator imports those modules
once (:func:`warm_up`); each rank of a step is then a ``fork()`` of it that sets the
environment torchrun would set (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``,
``MASTER_PORT``; one OpenMP thread per rank when there are several) and calls the same Hydra
entry point with the same arguments as the exec'd command, in a cleared Hydra state. The step
composes, validates and logs exactly as before; only the import cost is gone.

As with torchrun, the first rank that fails stops the others, and the step's exit code is
that rank's. A rank gets SIGKILL if the orchestrator dies.

A forked rank must end with ``os._exit``: a normal exit would run the exit handlers it inherited
from the orchestrator. But ``os._exit`` also skips the handler of ``multiprocessing`` that stops
helper processes, and Megatron-Core's checkpoint writer starts one (a manager server for its
results queue). Left alive, that helper keeps its memory and holds the step's stdout open, so a
caller reading the pipeline's output through a pipe would wait forever. :func:`_exit` therefore
runs the ``multiprocessing`` shutdown itself, exactly what an exec'd rank's interpreter runs
when it exits, and only then calls ``os._exit``.

Forking is for CPU runs (the tiny pipeline): the orchestrator never touches CUDA, but forking
a process that holds NCCL or CUDA state is not safe in general, so multi-GPU pipelines keep
``launcher=exec`` (a torchrun per step), the default.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback

WARM_MODULES = (
    "torch", "megatron.core.models.gpt", "megatron.core.optimizer", "megatron.core.dist_checkpointing",
    "megatron.core.inference.contexts", "transformers", "matplotlib.pyplot",
    "r1mega.stages.sft", "r1mega.stages.grpo", "r1mega.stages.evaluate", "r1mega.stages.curation",
)


def warm_up() -> None:
    """Import what every step imports, once, before the first fork (no threads, no CUDA)."""
    import importlib
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in WARM_MODULES:
            importlib.import_module(name)


def _rank_env(rank: int, nproc: int, port: int) -> dict:
    if nproc == 1:
        return {}
    return {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(nproc),
            "LOCAL_WORLD_SIZE": str(nproc), "GROUP_RANK": "0", "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}


def _child(argv: list, env: dict, on_start) -> int:  # pragma: no cover - runs in the fork
    """Run ``r1mega-train argv`` in this forked process; the exit code."""
    try:
        on_start()
        os.environ.update(env)
        if env:
            import torch

            torch.set_num_threads(1)
        from hydra.core.global_hydra import GlobalHydra

        GlobalHydra.instance().clear()
        sys.argv = ["r1mega-train", *argv]
        from r1mega.cli.train import main

        main()
        return 0
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # noqa: BLE001 - report anything, then exit with 1
        traceback.print_exc()
        return 1


def run(argv: list, nproc: int, port: int, on_start=lambda: None) -> int:
    """Fork ``nproc`` ranks of ``r1mega-train argv``; wait; the step's exit code."""
    sys.stdout.flush()
    sys.stderr.flush()
    pids = []
    for rank in range(nproc):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child never returns
            _exit(_child(argv, _rank_env(rank, nproc, port), on_start))
        pids.append(pid)
    return _wait(pids)


def _exit(code: int) -> None:  # pragma: no cover - runs in the fork
    """End a forked rank: stop its multiprocessing helpers, flush, ``os._exit(code)``."""
    try:
        import multiprocessing.util

        multiprocessing.util._exit_function()  # the atexit hook of multiprocessing (stable since 2.6)
    except BaseException:  # noqa: BLE001 - the exit code matters more than a cleanup failure
        traceback.print_exc()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _wait(pids: list) -> int:
    """Wait for every rank; at the first failure stop the rest (torchrun's behaviour)."""
    live, code = set(pids), 0
    try:
        while live:
            pid, status = os.wait()
            if pid not in live:
                continue
            live.discard(pid)
            rc = os.waitstatus_to_exitcode(status)
            if rc != 0 and code == 0:
                code = rc if rc > 0 else 1
                _stop(live)
    except KeyboardInterrupt:
        _stop(live)
        raise
    return code


def _stop(pids: set) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in list(pids):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pids.discard(pid)
        deadline = time.monotonic() + 5
        while pids and time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                pids.clear()
                break
            if pid:
                pids.discard(pid)
            else:
                time.sleep(0.05)
