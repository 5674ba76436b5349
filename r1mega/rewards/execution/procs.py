"""Finding and killing leftover sandbox processes, by reading ``/proc`` (no psutil).

A sandboxed program can escape its process group: fork, ``setsid()`` and let the parent exit
(the classic daemon double fork). Killing the process group is therefore only the first
step; afterwards we kill by *identity*:

* with a dedicated uid, :func:`kill_uid` sends ``kill(-1, SIGKILL)`` from a helper running as
  that uid. The kernel signals every process of the uid in one pass under the task-list lock,
  so even a fork bomb cannot outrun it.
* without one, :func:`kill_marked` scans ``/proc/*/environ`` for the run's unique
  ``R1MEGA_SANDBOX=<marker>`` variable and kills the matches, repeating until none are left.
  A program that re-``exec``\\s itself with a cleared environment escapes this scan; in a pool
  worker, a child subreaper, :func:`kill_children` catches it anyway, because every orphan of
  a sandbox ends up as the worker's child.

Pool workers then reap (:func:`reap_children`) until :func:`has_children` says nothing is left.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def pids_with_marker(marker: str, where: str = "environ") -> list[int]:
    """Pids whose ``/proc/<pid>/<where>`` (``environ`` or ``cmdline``) contains ``marker``."""
    needle = marker.encode()
    me = os.getpid()
    return [pid for pid in _pids() if pid != me and needle in _read(f"/proc/{pid}/{where}")]


def _uid_of(pid: int) -> int | None:
    for line in _read(f"/proc/{pid}/status").splitlines():
        if line.startswith(b"Uid:"):
            return int(line.split()[1])
    return None


def pids_of_uid(uid: int) -> list[int]:
    """Pids whose real uid is ``uid`` (from the ``Uid:`` line of ``/proc/<pid>/status``)."""
    return [pid for pid in _pids() if _uid_of(pid) == uid]


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def kill_marked(marker: str, rounds: int = 5) -> int:
    """Kill every process whose environment carries ``marker``; returns how many were found."""
    total = 0
    for _ in range(rounds):
        pids = pids_with_marker(marker)
        if not pids:
            break
        total += len(pids)
        for pid in pids:
            _kill(pid)
        time.sleep(0.005)
    return total


def _kill_all_as(uid: int) -> None:
    """In a forked child: become ``uid`` and signal everything it owns."""
    try:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        os.kill(-1, signal.SIGKILL)
    except OSError:
        pass
    finally:
        os._exit(0)


def kill_uid(uid: int) -> None:
    """Kill every process owned by ``uid`` (root only; see module docstring)."""
    if threading.active_count() == 1:
        pid = os.fork()  # cheap, and safe in a single-threaded process
        if pid == 0:
            _kill_all_as(uid)
        os.waitpid(pid, 0)
    else:  # a multi-threaded caller must not fork without exec
        subprocess.run(["kill", "-KILL", "-1"], user=uid, group=uid, extra_groups=[],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)


def kill_children() -> int:
    """SIGKILL every child of this process (found through ``/proc/<pid>/stat``); returns how many.

    In a subreaper whose only children are sandbox processes this catches what a marker scan
    cannot: orphans that re-``exec``\\ed with an empty environment.
    """
    me, count = os.getpid(), 0
    for pid in _pids():
        stat = _read(f"/proc/{pid}/stat")
        fields = stat[stat.rfind(b")") + 2:].split()
        if len(fields) > 1 and int(fields[1]) == me:
            _kill(pid)
            count += 1
    return count


def has_children() -> bool:
    """Whether this process has any child, running or exited (``waitpid`` without reaping)."""
    try:
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return True


def reap_children() -> int:
    """Collect every exited child (non-blocking); returns how many were reaped."""
    reaped = 0
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return reaped
        if pid == 0:
            return reaped
        reaped += 1


def wait_uid_gone(uid: int, timeout: float) -> bool:
    """Poll until no process of ``uid`` exists (dying ones need a moment); False on timeout."""
    deadline = time.monotonic() + timeout
    while pids_of_uid(uid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def sweep_identity(uid: int | None, marker: str, scratch_dir: str) -> None:
    """Kill every process of a sandbox identity and delete its scratch directory."""
    if uid is not None:
        kill_uid(uid)  # covers everything: sandboxed programs cannot change uid
    else:
        kill_marked(marker)
    shutil.rmtree(scratch_dir, ignore_errors=True)


def kill_group(pgid: int) -> None:
    """SIGKILL a process group, ignoring one that is already gone."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
