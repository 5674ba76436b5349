"""Helper processes die with the process that started them.

Every helper process r1mega starts (reward workers and their sandboxed programs, forked or
exec'd pipeline ranks, ranks under torchrun, the manager server Megatron-Core's checkpoint
writer starts) calls :func:`arm` first thing, with the pid of the process it must not outlive.
On Linux that is ``prctl(PR_SET_PDEATHSIG, SIGKILL)``: the kernel kills the helper the moment
its parent dies, SIGKILL included, even while the helper is stuck in C code. Elsewhere a
daemon thread polls ``getppid()`` and ends the process with ``os._exit`` when it changes.

Two details make this reliable:

* the parent can die between ``fork`` and the ``prctl``; :func:`arm` therefore compares
  ``getppid()`` with the pid the caller passes (taken *before* the fork) and exits at once if
  the helper has already been re-parented;
* Linux delivers the signal when the *thread* that forked the helper exits, not the process:
  start helpers from a long-lived thread (the main thread, as r1mega does).

``prctl`` settings survive ``execve`` (not of set-uid programs) and are cleared by
``setuid``/``setgid``: a sandbox that changes uid arms itself after the change.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from typing import Callable

PR_SET_PDEATHSIG = 1
ORPHAN_EXIT_CODE = 137  # 128 + SIGKILL: what the kernel's way would have reported

_libc = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


def _set_pdeathsig(sig: int) -> None:
    if _libc.prctl(ctypes.c_int(PR_SET_PDEATHSIG), ctypes.c_ulong(sig), ctypes.c_ulong(0),
                   ctypes.c_ulong(0), ctypes.c_ulong(0)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_PDEATHSIG): {os.strerror(err)}")


def _watch(parent_pid: int, interval_s: float) -> None:  # pragma: no cover - non-Linux only
    while os.getppid() == parent_pid:
        time.sleep(interval_s)
    os._exit(ORPHAN_EXIT_CODE)


def arm(parent_pid: int, interval_s: float = 0.5) -> None:
    """In a helper: die when ``parent_pid`` (its parent, read before the fork) dies."""
    if _libc is not None:
        _set_pdeathsig(signal.SIGKILL)
    else:  # pragma: no cover - non-Linux only
        threading.Thread(target=_watch, args=(parent_pid, interval_s), daemon=True,
                         name="r1mega-lifeline").start()
    if os.getppid() != parent_pid:  # the parent died before the prctl took effect
        os._exit(ORPHAN_EXIT_CODE)


def arm_to_parent() -> None:
    """In a process started by a launcher (torchrun): die with that launcher."""
    parent = os.getppid()
    if parent != 1:  # already orphaned before we could ask: nothing to tie to
        arm(parent)


def preexec() -> Callable[[], None]:
    """A ``preexec_fn`` for ``subprocess`` that arms the child to this process."""
    parent = os.getpid()

    def _arm() -> None:  # pragma: no cover - runs in the child between fork and exec
        arm(parent)

    return _arm


def spawn_manager(ctx=None):
    """A started ``multiprocessing`` manager whose server process is armed to this process."""
    import multiprocessing
    from multiprocessing.managers import SyncManager

    manager = SyncManager(ctx=ctx or multiprocessing.get_context("spawn"))
    manager.start(initializer=arm, initargs=(os.getpid(),))
    return manager


_writer_queue_pid: int | None = None
_inherited: list = []  # a forked process's copy of its parent's queue: dropping it would stop the parent's manager


def install_checkpoint_writer_queue() -> None:
    """Give Megatron-Core's filesystem checkpoint writer a results queue served by an armed manager.

    ``megatron.core.dist_checkpointing.strategies.filesystem_async`` creates the queue on its
    first save as ``mp.get_context("spawn").Manager().Queue()``: a manager server process that
    nothing ties to its parent, so a training run killed with SIGKILL leaves it (and the
    resource tracker it holds open) running forever. The module keeps the queue in the
    global ``_results_queue`` and only creates one when that is ``None``; this sets it first,
    once per process (a forked rank makes its own: the orchestrator's manager is not its child).
    """
    global _writer_queue_pid
    from megatron.core.dist_checkpointing.strategies import filesystem_async

    if _writer_queue_pid == os.getpid() and filesystem_async._results_queue is not None:
        return
    if filesystem_async._results_queue is not None:
        _inherited.append(filesystem_async._results_queue)
    manager = spawn_manager()
    filesystem_async._results_queue = manager.Queue()  # the proxy keeps the manager alive
    _writer_queue_pid = os.getpid()
