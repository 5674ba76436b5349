"""A persistent pool of worker processes with a hard deadline per job.

Why not ``multiprocessing.Pool`` or ``concurrent.futures``: neither can stop one task that
hangs. Their workers are reused, a stuck task keeps its worker forever, and the only remedy
is tearing down the whole pool. Here every job has a deadline; a worker that passes it is
SIGKILLed, the job scores as a timeout, and a fresh worker takes the slot while the others
keep going. Nothing in the batch waits for the stuck job.

Mechanics (all in the calling thread, no helper threads):

* each worker owns one duplex pipe; the parent sends one job at a time to an idle worker, so
  a send never blocks on a busy worker, and the job's clock starts at the send;
* ``multiprocessing.connection.wait`` sleeps on all pipes and process sentinels until a reply,
  a death, or the nearest deadline;
* a worker that dies (segfault, a program that killed its parent, the OOM killer) is noticed
  through its sentinel; its job reports ``crashed`` and the slot is respawned;
* after a kill or a death the slot's sandbox identity is swept (every process of its uid or
  carrying its marker, and its scratch directory), because a sandboxed program may have
  outlived the worker; the replacement worker does this before it reports ready.

Workers start through ``forkserver`` by default: the server imports and warms sympy once
(:mod:`r1mega.rewards.execution.worker_preload`), each worker is a cheap fork of it, and the parent may
have threads (a trainer) without fork-safety worries. A new worker announces itself ready
before it gets work, so slow start-ups never eat into a job's deadline.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Sequence

from r1mega.rewards.core.types import Job, Outcome
from r1mega.rewards.execution import isolation, procs
from r1mega.rewards.execution.worker import worker_main

PRELOAD = ["r1mega.rewards.execution.worker_preload"]
_MAX_START_FAILURES = 5


@dataclass
class _Slot:
    """One worker position: the identity persists, the process may be replaced."""

    identity: isolation.SandboxIdentity
    process: multiprocessing.process.BaseProcess | None = None
    conn: multiprocessing.connection.Connection | None = None
    ready: bool = False
    job: int | None = None
    started_at: float = 0.0
    start_failures: int = 0
    restarts: int = field(default=0)


class WorkerPool:
    """``run(jobs) -> outcomes`` on ``num_workers`` processes; see the module docstring."""

    def __init__(self, num_workers: int, start_method: str = "forkserver",
                 memory_mb: int | None = None, drop_privileges: bool = True) -> None:
        if num_workers < 1:
            raise ValueError(f"num_workers must be >= 1; got {num_workers}")
        self._ctx = multiprocessing.get_context(start_method)
        if start_method == "forkserver":
            self._ctx.set_forkserver_preload(PRELOAD)
        self._memory_mb = memory_mb
        self._closed = False
        self._slots = [_Slot(isolation.new_identity(drop_privileges)) for _ in range(num_workers)]
        self._dying: list = []  # killed workers not yet reported dead by their parent
        for slot in self._slots:
            self._start(slot)

    # ---------------------------------------------------------------- lifecycle
    def _start(self, slot: _Slot) -> None:
        """Start a worker for ``slot``; it sweeps the slot's identity before announcing itself."""
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(target=worker_main, args=(child_conn, self._memory_mb, slot.identity),
                                    daemon=True, name="r1mega-reward-worker")
        process.start()
        child_conn.close()
        slot.process, slot.conn, slot.ready, slot.job = process, parent_conn, False, None

    def _stop(self, slot: _Slot, graceful: bool) -> None:
        process, conn = slot.process, slot.conn
        if process is None:
            return
        if graceful and conn is not None:
            try:
                conn.send(None)
            except OSError:
                pass
            process.join(timeout=1.0)
        if process.is_alive():
            process.kill()
            process.join(timeout=1.0 if graceful else 0.05)
            if process.exitcode is None:  # SIGKILL is certain; collect it later, not now
                self._dying.append(process)
        if conn is not None:
            conn.close()
        slot.process, slot.conn, slot.ready, slot.job = None, None, False, None

    def _sweep(self, slot: _Slot) -> None:
        """Kill what the slot's sandboxes left running, then delete their directories."""
        procs.sweep_identity(slot.identity.uid, slot.identity.marker, slot.identity.scratch_dir)

    def _replace(self, slot: _Slot) -> None:
        """Kill the slot's worker and start another; the new one sweeps what the old one left.

        Sweeping in the new worker keeps this (the batch's) loop free: the other workers go on
        receiving jobs while the replacement starts up.
        """
        self._stop(slot, graceful=False)
        self._dying = [p for p in self._dying if p.exitcode is None]  # exitcode polls, reaps
        slot.restarts += 1
        self._start(slot)

    def close(self) -> None:
        """Stop every worker, sweep their sandboxes and release their uids (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for slot in self._slots:
            self._stop(slot, graceful=True)
        for process in self._dying:
            process.join(timeout=5.0)
        for slot in self._slots:
            self._sweep(slot)
            if slot.identity.uid is not None:
                isolation.release_uid(slot.identity.uid)

    @property
    def pids(self) -> list[int]:
        """Process ids of the live workers (for tests and monitoring)."""
        return [s.process.pid for s in self._slots if s.process is not None and s.process.pid]

    @property
    def scratch_dirs(self) -> list[str]:
        """Where each slot's sandboxed programs get their run directories."""
        return [s.identity.scratch_dir for s in self._slots]

    @property
    def restarts(self) -> int:
        """How many workers were replaced after a kill or a death."""
        return sum(s.restarts for s in self._slots)

    def wait_ready(self, timeout: float = 60.0) -> bool:
        """Block until every worker has announced itself; False if ``timeout`` passed first.

        Useful to keep worker start-up (or a replacement's) out of a latency measurement.
        """
        deadline = time.monotonic() + timeout
        while not all(s.ready for s in self._slots):
            if time.monotonic() > deadline:
                return False
            self._wait((), [])
        return True

    # ---------------------------------------------------------------- running
    def run(self, jobs: Sequence[Job]) -> list[Outcome]:
        """Run all ``jobs``; every job gets an Outcome, in order, within its deadline."""
        if self._closed:
            raise RuntimeError("the worker pool is closed")
        outcomes: list[Outcome | None] = [None] * len(jobs)
        pending = deque(range(len(jobs)))
        try:
            while pending or any(s.job is not None for s in self._slots):
                self._dispatch(jobs, pending, outcomes)
                self._wait(jobs, outcomes)
                self._enforce_deadlines(jobs, outcomes)
        except BaseException:
            for slot in self._slots:  # jobs in flight would answer the next run: drop them
                if slot.job is not None:
                    self._replace(slot)
            raise
        assert all(o is not None for o in outcomes)
        return outcomes  # type: ignore[return-value]

    def _dispatch(self, jobs: Sequence[Job], pending: deque, outcomes: list) -> None:
        for slot in self._slots:
            if not pending:
                return
            if not slot.ready or slot.job is not None:
                continue
            index = pending.popleft()
            job = jobs[index]
            try:
                slot.conn.send((index, job.fn, job.args, job.soft_timeout_s))
            except (OSError, ValueError) as exc:
                outcomes[index] = Outcome("error", error=f"could not send job: {type(exc).__name__}")
                self._replace(slot)
                continue
            slot.job, slot.started_at = index, time.monotonic()

    def _next_deadline(self, jobs: Sequence[Job]) -> float:
        now = time.monotonic()
        waits = [s.started_at + jobs[s.job].timeout_s - now for s in self._slots if s.job is not None]
        return max(0.0, min(waits)) if waits else 1.0

    def _wait(self, jobs: Sequence[Job], outcomes: list) -> None:
        live = [s for s in self._slots if s.process is not None]
        handles = [s.conn for s in live] + [s.process.sentinel for s in live]
        ready = set(multiprocessing.connection.wait(handles, timeout=self._next_deadline(jobs)))
        for slot in live:
            if slot.conn in ready:
                self._receive(slot, outcomes)
            elif slot.process.sentinel in ready:
                self._on_death(slot, outcomes)

    def _receive(self, slot: _Slot, outcomes: list) -> None:
        try:
            message = slot.conn.recv()
        except (EOFError, OSError):
            self._on_death(slot, outcomes)
            return
        except Exception as exc:  # a reply that cannot be unpickled
            message = (slot.job, "error", None, f"bad reply: {type(exc).__name__}", 0.0)
        if message[0] == "ready":
            slot.ready, slot.start_failures = True, 0
            return
        index, status, value, error, elapsed = message
        if index != slot.job:
            return  # stale; cannot happen with one job in flight, ignore defensively
        outcomes[index] = Outcome(status, value, error, elapsed)
        slot.job = None
        if status == "timeout":  # the worker retires after a soft timeout (see worker.py)
            self._replace(slot)

    def _on_death(self, slot: _Slot, outcomes: list) -> None:
        code = None
        if slot.process is not None:
            slot.process.join(timeout=0.5)  # EOF can precede the exit by a moment
            code = slot.process.exitcode
        if slot.job is not None:
            outcomes[slot.job] = Outcome("crashed", error=f"worker process died (exit code {code})")
        elif not slot.ready:
            slot.start_failures += 1
            if slot.start_failures > _MAX_START_FAILURES:
                raise RuntimeError(f"reward workers keep dying at start-up (exit code {code})")
        self._replace(slot)

    def _enforce_deadlines(self, jobs: Sequence[Job], outcomes: list) -> None:
        now = time.monotonic()
        for slot in self._slots:
            if slot.job is None:
                continue
            limit = jobs[slot.job].timeout_s
            if now - slot.started_at > limit:
                outcomes[slot.job] = Outcome("timeout", error=f"hard deadline of {limit:g}s passed; worker killed",
                                             elapsed_s=now - slot.started_at)
                self._replace(slot)
