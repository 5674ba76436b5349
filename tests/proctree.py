"""Which processes a killed run left behind.

A run started with :func:`tagged_env` carries a unique ``R1MEGA_TEST_TREE`` variable, which
every helper it starts inherits (forks, ``multiprocessing`` spawn and forkserver children,
torchrun's ranks). After the kill, :func:`survivors` looks for that variable in every
process's ``/proc/<pid>/environ``, so it also finds helpers that were started after the last
look at the process tree or that were re-parented to init, and the pids in
:func:`descendants`, taken just before the kill, are checked as well (by pid and start time, so
a recycled pid is not mistaken for a survivor).
"""

from __future__ import annotations

import os
import time
import uuid

import psutil

from r1mega.rewards.execution.procs import pids_with_marker

VAR = "R1MEGA_TEST_TREE"


def tagged_env(env: dict | None = None) -> tuple[dict, str]:
    """``env`` (default ``os.environ``) plus a fresh marker; returns ``(env, marker)``."""
    marker = uuid.uuid4().hex
    return dict(os.environ if env is None else env, **{VAR: marker}), f"{VAR}={marker}"


def descendants(pid: int) -> dict[int, float]:
    """``{pid: create_time}`` of every live descendant of ``pid``."""
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return {}
    out = {}
    for child in children:
        try:
            out[child.pid] = child.create_time()
        except psutil.NoSuchProcess:
            pass
    return out


def _alive(pid: int, created: float) -> bool:
    try:
        p = psutil.Process(pid)
        return p.create_time() == created and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _describe(pids) -> list[str]:
    out = []
    for pid in pids:
        try:
            out.append(f"{pid}: {' '.join(psutil.Process(pid).cmdline())[:200]}")
        except psutil.NoSuchProcess:
            pass
    return out


def _alive_now(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def survivors(marker: str, before: dict[int, float], timeout_s: float = 15.0) -> list[str]:
    """Processes of the killed run still alive after waiting up to ``timeout_s``; [] when none."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = {p for p, t in before.items() if _alive(p, t)}
        left |= {p for p in pids_with_marker(marker) if _alive_now(p)}
        if not left or time.monotonic() > deadline:
            return _describe(sorted(left))
        time.sleep(0.1)


def run_and_kill(cmd: list[str], when, env: dict | None = None, timeout_s: float = 600.0) -> None:
    """Start ``cmd``, SIGKILL it as soon as the path ``when`` exists, and assert that the run was
    killed (not finished) and that none of its processes outlives it."""
    import signal
    import subprocess

    env, marker = tagged_env(env)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline, helpers = time.time() + timeout_s, {}
    while time.time() < deadline and proc.poll() is None:
        if os.path.exists(when):
            helpers = descendants(proc.pid)
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert survivors(marker, helpers) == []
