"""Run one untrusted command under limits, and leave nothing behind.

Every run gets:

* its **own session and process group** (``start_new_session``) so the whole tree can be killed;
* a **scrubbed environment**: ``PATH``, ``HOME``/``TMPDIR`` (the run directory), a UTF-8
  locale and the identity marker -- nothing from the host, so secrets in the reward worker's
  environment are invisible;
* **rlimits**: CPU seconds (soft, then SIGKILL one second later), address space, file size
  (caps what it can write, stdout included, since stdout is a file), open files, processes, no
  core dumps;
* ``PR_SET_NO_NEW_PRIVS`` and a **parent-death signal**, so a child outlives neither a dying
  worker nor gains privileges through set-uid binaries;
* the isolation of :mod:`r1mega.rewards.execution.isolation` the host allows: network namespace, private
  ``/tmp``, dedicated uid;
* a **wall-clock timeout** (waited on with a pidfd, so short runs return at once), after
  which the process group is killed -- and after *every* run, a sweep of whatever is left: in
  a pool worker, which is a child subreaper, any surviving descendant (a double-forked daemon
  that called ``setsid``) has been re-parented to the worker, so "no children" proves the run
  is clean; otherwise every process of the identity is killed and the zombies reaped.

stdin, stdout and stderr are unnamed temporary files rather than pipes: no deadlock on large
outputs, and ``RLIMIT_FSIZE`` bounds what a program can print.

The caller owns the run directory (:func:`run_directory`): a fresh ``mkdtemp`` inside the
identity's scratch directory, handed to the sandbox uid and removed afterwards.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import resource
import select
import shutil
import subprocess
import tempfile
import time
from typing import Iterator

from r1mega import lifeline
from r1mega.rewards.execution import isolation, procs


@dataclasses.dataclass(frozen=True)
class Limits:
    """Resource limits of one run."""

    wall_s: float
    """Wall-clock limit; the run is killed after it."""
    cpu_s: int
    """CPU-time limit (``RLIMIT_CPU``; SIGXCPU, then SIGKILL one second later)."""
    memory_mb: int | None
    """Address-space limit (``RLIMIT_AS``), None for none."""
    output_bytes: int
    """Largest file the program may write, stdout and stderr included (``RLIMIT_FSIZE``)."""
    processes: int
    """Processes/threads it may create (``RLIMIT_NPROC``; see :func:`_nproc_limit`)."""
    open_files: int
    """Open file descriptors (``RLIMIT_NOFILE``)."""


@dataclasses.dataclass(frozen=True)
class Policy:
    """Which isolation a run uses (resolved from options and :func:`isolation.probe`)."""

    identity: isolation.SandboxIdentity
    """Uid to run as (or None) and the environment marker."""
    unshare_flags: int
    """Namespaces to create before exec (0: none)."""
    private_tmp: bool
    """Bind the run directory over /tmp, /var/tmp and /dev/shm (needs CLONE_NEWNS in flags)."""


@dataclasses.dataclass
class RunResult:
    """What happened to one run."""

    exit_code: int | None
    """Exit status, or None when it died from a signal."""
    signal: int | None
    """The killing signal, if any."""
    timed_out: bool
    """True when the wall-clock limit fired."""
    stdout: bytes
    """Captured standard output (at most ``Limits.output_bytes``)."""
    stderr: bytes
    """Captured standard error (at most 64 KiB)."""
    output_limited: bool
    """The program hit the output-size limit."""
    elapsed_s: float
    """Wall time of the run."""


class SandboxError(RuntimeError):
    """The sandbox itself could not start the program (not the program's fault)."""


@contextlib.contextmanager
def run_directory(identity: isolation.SandboxIdentity) -> Iterator[str]:
    """A fresh private directory for one candidate program, removed afterwards.

    It is created inside ``identity.scratch_dir`` (traversable, not listable, by others), so a
    directory orphaned by a killed worker is still found and removed by the pool's sweep.
    """
    os.makedirs(identity.scratch_dir, mode=0o711, exist_ok=True)
    path = tempfile.mkdtemp(prefix="run-", dir=identity.scratch_dir)
    try:
        if identity.uid is not None:
            os.chown(path, identity.uid, identity.uid)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _nproc_limit(policy: Policy, limits: Limits) -> int:
    """``RLIMIT_NPROC`` counts all processes of the real uid, not just this run's.

    With a dedicated uid the count starts at zero, so the limit is exact. Otherwise the run
    shares the worker's uid: allow the processes that exist now (an upper bound of the uid's
    own count) plus the run's budget. Root without a dedicated uid ignores the limit.
    """
    if policy.identity.uid is not None:
        return limits.processes
    return len(os.listdir("/proc")) + limits.processes


def _preexec(policy: Policy, limits: Limits, workdir: str):
    """Build the function that runs in the child between fork and exec (see module docstring)."""
    uid = policy.identity.uid
    worker = os.getpid()
    cwd = "/tmp" if policy.private_tmp else workdir
    tmp_dirs = [d for d in isolation.TMP_DIRS if os.path.isdir(d)]
    rlimits = [
        (resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s + 1)),
        (resource.RLIMIT_FSIZE, (limits.output_bytes, limits.output_bytes)),
        (resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files)),
        (resource.RLIMIT_NPROC, (_nproc_limit(policy, limits),) * 2),
        (resource.RLIMIT_CORE, (0, 0)),
    ]
    if limits.memory_mb is not None:
        size = limits.memory_mb * 1024 * 1024
        rlimits.append((resource.RLIMIT_AS, (size, size)))

    def setup() -> None:
        if policy.unshare_flags:
            isolation.unshare(policy.unshare_flags)
        if policy.private_tmp:
            isolation.make_mounts_private()
            for target in tmp_dirs:
                isolation.bind_mount(workdir, target)
        os.chdir(cwd)
        for which, value in rlimits:
            resource.setrlimit(which, value)
        if uid is not None:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
        isolation.prctl(isolation.PR_SET_NO_NEW_PRIVS, 1)
        lifeline.arm(worker)  # after setuid, which clears the parent-death signal

    return setup, cwd


def _environment(policy: Policy, cwd: str) -> dict[str, str]:
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": cwd,
        "TMPDIR": cwd,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        isolation.MARKER_VAR: policy.identity.marker,
    }


def cleanup(policy: Policy) -> None:
    """Kill every process of the run's identity (its uid, or its environment marker)."""
    if policy.identity.uid is not None:
        procs.kill_uid(policy.identity.uid)
    else:
        procs.kill_marked(policy.identity.marker)


def _sweep(policy: Policy, timeout: float = 3.0) -> None:
    """After the run's own process is gone: kill and reap whatever it left behind.

    In a pool worker (a subreaper, see :func:`isolation.become_subreaper`) every surviving
    descendant -- however it forked or called ``setsid`` -- has been handed to us, so "no
    children" is the exact end condition: the common case costs one ``waitid``, and after a
    kill we reap until nothing is left (zombies would otherwise count against a dedicated
    uid's process limit). Without a dedicated uid, orphans are also killed as our children,
    which catches those that dropped the marker from their environment. Elsewhere (in-process
    use) we can only kill by identity.
    """
    reaper = isolation.is_subreaper()
    if reaper and not procs.has_children():
        return
    cleanup(policy)
    if not reaper:
        return
    deadline = time.monotonic() + timeout
    while True:
        procs.reap_children()
        if not procs.has_children() or time.monotonic() > deadline:
            return
        time.sleep(0.005)
        if policy.identity.uid is None:  # no kill(-1) to rely on: by marker, then by parentage
            procs.kill_marked(policy.identity.marker, rounds=1)
            procs.kill_children()


def _wait_exit(proc: subprocess.Popen, timeout: float) -> bool:
    """Wait until ``proc`` exits or ``timeout`` passes; True when it exited.

    A pidfd becomes readable the moment the process exits, so short runs are not rounded up
    to ``Popen.wait``'s polling interval (it sleeps in growing steps of up to 50 ms).
    """
    try:
        fd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        try:
            proc.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            return False
    try:
        # poll, not select: select() rejects descriptors >= 1024, which a long-lived trainer
        # process (many open files and sockets) reaches.
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(None if timeout is None else max(timeout, 0) * 1000))
    finally:
        os.close(fd)


def _read_capped(f, cap: int) -> bytes:
    f.seek(0)
    return f.read(cap)


def run(argv: list[str], workdir: str, stdin: bytes, limits: Limits, policy: Policy) -> RunResult:
    """Run ``argv`` in ``workdir`` under ``limits`` and ``policy``; always cleans up."""
    setup, cwd = _preexec(policy, limits, workdir)
    with tempfile.TemporaryFile() as fin, tempfile.TemporaryFile() as fout, tempfile.TemporaryFile() as ferr:
        fin.write(stdin)
        fin.seek(0)
        start = time.monotonic()
        try:
            proc = subprocess.Popen(argv, stdin=fin, stdout=fout, stderr=ferr, env=_environment(policy, cwd),
                                    preexec_fn=setup, start_new_session=True, close_fds=True)
        except (OSError, subprocess.SubprocessError) as exc:
            raise SandboxError(f"could not start {argv[0]!r}: {exc}") from None
        try:
            timed_out = not _wait_exit(proc, limits.wall_s)
        finally:
            procs.kill_group(proc.pid)
            proc.wait()
            _sweep(policy)
        elapsed = time.monotonic() - start
        out_size = os.fstat(fout.fileno()).st_size
        code = proc.returncode
        return RunResult(
            exit_code=code if code >= 0 else None,
            signal=-code if code < 0 else None,
            timed_out=timed_out,
            stdout=_read_capped(fout, limits.output_bytes),
            stderr=_read_capped(ferr, 65536),
            output_limited=out_size >= limits.output_bytes,
            elapsed_s=elapsed,
        )
