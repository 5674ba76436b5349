"""The loop a reward worker process runs, and the per-job soft deadline.

A worker first announces ``("ready", pid)``, then receives
``(job_id, fn, args, soft_timeout_s)`` messages on its pipe, runs
``fn(*args)`` and answers ``(job_id, status, value, error, elapsed_s)``. It never prints or
formats the values it computes: a reply carries the function's (small, plain) return value or
the *type* of the exception plus its message only when the message is a short string.

Soft deadline: ``setitimer(ITIMER_REAL)`` raises :class:`SoftTimeout` inside the job. It
derives from ``BaseException`` so that library code with ``except Exception`` (math-verify
has plenty) cannot swallow it. It interrupts anything that returns to the Python eval loop;
C code that never does (a giant integer product) is the pool's business -- it kills the worker
at the hard deadline. After a soft timeout the worker answers and then exits: the interrupted
code (ANTLR's lazily built DFA caches, sympy's caches) may have been stopped half-way through
updating shared state, and a fresh fork of the warm forkserver costs milliseconds.

At start a worker asks to be SIGKILLed when its parent dies, hides its environment from
same-uid processes (not dumpable), becomes a child subreaper (orphaned sandbox processes come
back to it for killing and reaping), sets a soft address-space limit, so a sympy blow-up
raises MemoryError instead of swapping the node, and sweeps its slot's sandbox identity (a
killed predecessor may have left processes and run directories) before announcing itself.

Importing this module has no side effects; :mod:`r1mega.rewards.execution.worker_preload` is what the
forkserver imports to start workers with sympy loaded and warm.
"""

from __future__ import annotations

import os
import resource
import signal
import time
from typing import Any

from r1mega import lifeline
from r1mega.rewards.execution import isolation, procs


class SoftTimeout(BaseException):
    """Raised inside a job when its soft deadline passes."""


def _on_alarm(signum, frame):
    raise SoftTimeout()


def safe_error(exc: BaseException) -> str:
    """Describe an exception without calling ``str`` on arbitrary objects (that can hang)."""
    name = type(exc).__name__
    if exc.args and all(isinstance(a, (str, int)) for a in exc.args):
        text = " ".join(str(a) for a in exc.args)
        return f"{name}: {text[:300]}"
    return name


def run_job(fn, args: tuple, soft_timeout_s: float | None) -> tuple[str, Any, str | None]:
    """Run one job in this process; returns ``(status, value, error)``."""
    if soft_timeout_s:
        signal.setitimer(signal.ITIMER_REAL, soft_timeout_s)
    try:
        try:
            return "ok", fn(*args), None
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except SoftTimeout:
        return "timeout", None, "soft deadline passed"
    except Exception as exc:  # the job's own failure, reported to the caller
        return "error", None, safe_error(exc)


def _init_process(memory_mb: int | None, identity: isolation.SandboxIdentity) -> None:
    lifeline.arm_to_parent()  # the forkserver (itself tied to the pool's process), or the pool's process
    isolation.prctl(isolation.PR_SET_DUMPABLE, 0)  # hide our environ from same-uid programs
    isolation.become_subreaper()  # orphaned sandbox processes come back to us for reaping
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    signal.signal(signal.SIGALRM, _on_alarm)
    if memory_mb is not None:
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (memory_mb * 1024 * 1024, hard))
    isolation.set_identity(identity)
    # a killed predecessor in this slot may have left sandboxed processes and run directories
    procs.sweep_identity(identity.uid, identity.marker, identity.scratch_dir)


def worker_main(conn, memory_mb: int | None, identity: isolation.SandboxIdentity) -> None:
    """Entry point of a pool worker process."""
    _init_process(memory_mb, identity)
    conn.send(("ready", os.getpid()))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            break
        if message is None:
            break
        job_id, fn, args, soft_timeout_s = message
        start = time.monotonic()
        status, value, error = run_job(fn, args, soft_timeout_s)
        try:
            conn.send((job_id, status, value, error, time.monotonic() - start))
        except Exception as exc:  # e.g. an unpicklable return value
            try:
                conn.send((job_id, "error", None, f"could not return result: {safe_error(exc)}", 0.0))
            except OSError:
                break
        if status == "timeout":
            break  # interrupted library code may have left caches half-built: retire
    os._exit(0)
