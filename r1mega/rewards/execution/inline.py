"""Run jobs in the calling process: the ``num_workers=0`` path, for unit tests and debugging.

Same interface as :class:`~r1mega.rewards.execution.pool.WorkerPool` (``run(jobs) -> outcomes``), none
of its protection: a job's deadline is applied as a ``SIGALRM`` soft timeout when called from
the main thread (and not at all from other threads), and a job stuck in C code (a giant
integer power) blocks the caller. Use the pool for anything that sees model outputs.
"""

from __future__ import annotations

import signal
import threading
from typing import Sequence

from r1mega.rewards.core.types import Job, Outcome
from r1mega.rewards.execution.worker import _on_alarm, run_job


class InlineExecutor:
    """Runs each job directly; see the module docstring."""

    def run(self, jobs: Sequence[Job]) -> list[Outcome]:
        """Run ``jobs`` one after another in this process."""
        in_main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGALRM, _on_alarm) if in_main else None
        try:
            outcomes = []
            for job in jobs:
                soft = (job.soft_timeout_s or job.timeout_s) if in_main else None
                status, value, error = run_job(job.fn, job.args, soft)
                outcomes.append(Outcome(status, value, error))
            return outcomes
        finally:
            if in_main:
                signal.signal(signal.SIGALRM, previous)

    def close(self) -> None:
        """Nothing to release."""
