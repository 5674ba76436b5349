"""Shared test fixtures: CPU redirects for Megatron, free ports, gloo process spawning; process
groups torn down after the test (or module) that created them, and a thread-leak check."""

from __future__ import annotations

import collections
import gc
import os
import socket
import sys
import threading
import time

import pytest
import torch
import torch.distributed as dist

os.environ.setdefault("NCCL_NVLS_ENABLE", "0")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


# ------------------------------------------------------------------ process groups and threads
# A gloo process group runs threads (``pt_gloo_runloop``, ``gloo_tcp_loop``, the store's
# ``pt_tcpstore_uv``) for as long as it lives, and Megatron builds about twenty groups. Tests
# that build groups in this process (``ParallelDims.build``, a stage run in-process) and end
# without destroying them -- an expected error, a module fixture -- used to leave ~60 threads
# each: 2,674 a quarter of the way through the suite. The fixtures below destroy what a test or
# module created, and the check fails the test after which threads are left over.

THREAD_ALLOWANCE = 3  # threads a test may leave (one-time lazy helpers); a gloo group leaves 3+
SESSION_ALLOWANCE = 24  # growth since the last report: catches small leaks that add up
THREAD_GRACE_S = 3.0  # time a test's finishing threads get to end before they count


def _main_comm() -> str:
    with open("/proc/self/comm") as f:
        return f.read().strip()


def thread_census() -> collections.Counter:
    """Threads of this process that can leak: Python threads (by name), plus native threads that
    name themselves (gloo, the TCP store, ...), by their ``/proc/self/task/*/comm``. Unnamed
    native threads (OpenMP's pool, sized by the core count and started on first use) carry the
    process's own name and are not counted."""
    census = collections.Counter(f"python:{t.name.split('(')[0].rstrip()}" for t in threading.enumerate())
    if not os.path.isdir("/proc/self/task"):
        return census
    main = _main_comm()
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                comm = f.read().strip()
        except OSError:  # the thread ended while we looked
            continue
        if comm != main:
            census[comm] += 1
    return census


def _destroy_groups() -> None:
    if "megatron.core.parallel_state" in sys.modules:  # (not imported: no Megatron groups to destroy)
        from r1mega.parallel.dims import destroy

        destroy()
    elif _groups_up():
        dist.destroy_process_group()


_session = {"base": None, "module": None, "pending": None}


def _grown(before: collections.Counter, after: collections.Counter) -> dict:
    return {k: after[k] - before[k] for k in after if after[k] > before[k]}


def _settle(before: collections.Counter, allowed: int) -> collections.Counter:
    """The census once growth over ``before`` is within ``allowed``, or after the grace time."""
    deadline = time.monotonic() + THREAD_GRACE_S
    collected = False
    while True:
        after = thread_census()
        if sum(after.values()) - sum(before.values()) <= allowed or time.monotonic() > deadline:
            return after
        if not collected:  # groups held only by reference cycles (a stored traceback) go now
            gc.collect()
            collected = True
        time.sleep(0.1)


def _groups_up() -> bool:
    return dist.is_available() and dist.is_initialized()


def _module_verdict() -> str | None:
    """The pending check of the module that ended last; a message when it leaked threads."""
    pending, _session["pending"] = _session["pending"], None
    if pending is None:
        return None
    nodeid, before = pending
    after = _settle(before, THREAD_ALLOWANCE)
    growth = sum(after.values()) - sum(before.values())
    if growth <= THREAD_ALLOWANCE:
        return None
    _session["base"] = after
    return (f"module {nodeid} left {growth} more threads than it started with "
            f"(allowed {THREAD_ALLOWANCE}): {_grown(before, after)}")


@pytest.fixture(autouse=True, scope="module")
def _module_process_groups(request):
    """Process groups a module's fixtures built are destroyed after the module; threads its
    tests started while those groups were up (more groups, lazily) must be gone by then. The
    last test still holds its fixture values (models holding groups) while the module ends, so
    the count is checked when the next test starts, or at the end of the session."""
    was = _groups_up()
    _session["module"] = thread_census()
    yield
    if was:
        return
    _destroy_groups()
    # moved on by each leak already reported for one of its tests
    _session["pending"] = (request.node.nodeid, _session["module"])


@pytest.fixture(autouse=True)
def _process_groups_and_threads(request):
    """Destroy the process groups this test built; fail it if it leaves threads behind.

    A test that starts with groups up (a module fixture built them) is checked with its module
    instead: module fixtures may start more groups lazily, during whichever test asks first."""
    verdict = _module_verdict()
    if verdict:
        pytest.fail(verdict, pytrace=False)  # an error at the setup of the module's next test
    if _groups_up():
        yield
        return
    before = thread_census()
    if _session["base"] is None:
        _session["base"] = before
    yield
    _destroy_groups()
    after = _settle(before, THREAD_ALLOWANCE)
    test_growth = sum(after.values()) - sum(before.values())
    if test_growth > THREAD_ALLOWANCE:
        _session["base"] = _session["module"] = after  # report each leak once, not after every later test
        pytest.fail(f"{request.node.nodeid} left {test_growth} more threads than it started with "
                    f"(allowed {THREAD_ALLOWANCE}): {_grown(before, after)}", pytrace=False)
    base = _session["base"]
    after = _settle(base, SESSION_ALLOWANCE)
    session_growth = sum(after.values()) - sum(base.values())
    if session_growth > SESSION_ALLOWANCE:
        _session["base"] = _session["module"] = after
        pytest.fail(f"threads grew by {session_growth} since the suite started or the last such report "
                    f"(allowed {SESSION_ALLOWANCE}), past the limit after {request.node.nodeid}: "
                    f"{_grown(base, after)}", pytrace=False)


def pytest_sessionfinish(session):
    verdict = _module_verdict()
    if verdict:
        _session["final"] = verdict
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter):
    if _session.get("final"):
        terminalreporter.write_line(f"ERROR {_session['final']}", red=True)
    if _session["base"] is None:
        return
    now = thread_census()
    total = len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else threading.active_count()
    terminalreporter.write_line(f"threads: {sum(now.values())} countable at the end ({total} in all), "
                                f"{sum(_session['base'].values())} at the first test or the last leak report")
