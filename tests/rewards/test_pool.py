"""The worker pool: ordering, hard and soft deadlines, crashes, replacement, clean shutdown.

Jobs use stdlib functions so the workers can unpickle them by reference: ``pow(9, 9**9)``
computes for minutes inside C and gets no soft deadline, so only the hard kill stops it;
``exec("while True: pass")`` is a pure-Python loop that the soft deadline interrupts early
(the worker then retires).
"""

from __future__ import annotations

import operator
import os
import time

import pytest

from r1mega.rewards.core.types import Job, Score
from r1mega.rewards.execution.pool import WorkerPool


def _job(fn, *args, timeout_s: float = 5.0, soft: float | None = None) -> Job:
    return Job(fn=fn, args=args, timeout_s=timeout_s, soft_timeout_s=soft, finish=lambda o: Score(0.0))


@pytest.fixture(scope="module")
def pool():
    p = WorkerPool(2)
    yield p
    p.close()


def test_results_come_back_in_order(pool):
    outcomes = pool.run([_job(operator.add, i, i) for i in range(50)])
    assert [o.status for o in outcomes] == ["ok"] * 50
    assert [o.value for o in outcomes] == [2 * i for i in range(50)]


def _timed_run(pool, jobs):
    start = time.monotonic()
    outcomes = pool.run(jobs)
    return outcomes, time.monotonic() - start


def test_hard_deadline_kills_only_the_stuck_worker(pool):
    restarts = pool.restarts
    normal = [_job(operator.mul, i, 3) for i in range(20)]
    _, baseline = _timed_run(pool, normal)  # the same work without the stuck job: load-independent bound
    outcomes, elapsed = _timed_run(pool, [_job(pow, 9, 9**9, timeout_s=0.5)] + normal)
    assert outcomes[0].status == "timeout"
    assert [o.value for o in outcomes[1:]] == [3 * i for i in range(20)]
    assert elapsed < 0.5 + 1.0 + baseline
    assert pool.restarts == restarts + 1
    assert pool.run([_job(operator.add, 1, 1)])[0].value == 2  # the replacement works


def test_soft_deadline_answers_before_the_hard_one(pool):
    restarts = pool.restarts
    start = time.monotonic()
    outcome = pool.run([_job(exec, "while True: pass", timeout_s=3.0, soft=0.3)])[0]
    assert outcome.status == "timeout"
    assert outcome.error == "soft deadline passed"
    assert time.monotonic() - start < 1.0
    assert pool.run([_job(operator.add, 1, 1)])[0].value == 2
    assert pool.restarts == restarts + 1  # the interrupted worker retires itself


def test_exceptions_are_reported_not_raised(pool):
    outcome = pool.run([_job(operator.truediv, 1, 0)])[0]
    assert outcome.status == "error"
    assert outcome.error.startswith("ZeroDivisionError")


def test_a_dying_worker_is_replaced(pool):
    restarts = pool.restarts
    outcomes = pool.run([_job(os._exit, 3), _job(operator.add, 2, 2)])
    assert outcomes[0].status == "crashed"
    assert "exit code 3" in outcomes[0].error
    assert outcomes[1].value == 4
    assert pool.restarts == restarts + 1


def test_empty_batch(pool):
    assert pool.run([]) == []


def test_close_stops_every_worker():
    p = WorkerPool(2)
    assert p.run([_job(operator.add, 1, 2)])[0].value == 3
    pids = p.pids
    assert len(pids) == 2
    p.close()
    p.close()  # idempotent
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"
    with pytest.raises(RuntimeError):
        p.run([_job(operator.add, 1, 2)])


def test_invalid_size():
    with pytest.raises(ValueError, match="num_workers"):
        WorkerPool(0)


def test_wait_ready_after_a_replacement(pool):
    pool.run([_job(os._exit, 1)])
    assert pool.wait_ready(timeout=30.0)
    assert pool.run([_job(operator.add, 20, 22)])[0].value == 42


def test_forkserver_preload_names_real_modules():
    """The forkserver skips a preload module it cannot import, silently: a stale dotted path
    after a move would only make every replacement worker start cold."""
    import importlib.util

    from r1mega.rewards.execution import pool as pool_module

    assert pool_module.PRELOAD
    for name in pool_module.PRELOAD:
        assert importlib.util.find_spec(name) is not None, name
