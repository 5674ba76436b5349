"""Kernel isolation primitives for the code sandbox, and probing which ones this host allows.

The sandbox (:mod:`r1mega.rewards.execution.sandbox`) layers whatever the kernel lets us use:

* **network namespace** -- ``unshare(CLONE_NEWNET)`` in the child before ``exec``: the program
  sees only a loopback device that is down, so every connect fails. Needs root, or an
  unprivileged user namespace (``CLONE_NEWUSER | CLONE_NEWNET``).
* **mount namespace with a private /tmp** (root) -- ``/tmp``, ``/var/tmp`` and ``/dev/shm`` are
  bind-mounted onto the run's own temporary directory, so "writing outside the sandbox" into
  world-writable places lands inside it and is deleted with it.
* **a dedicated unprivileged uid** (root) -- each worker slot owns a uid from a reserved range
  (claimed with ``flock`` so concurrent managers never share one). Running as that uid makes
  ``RLIMIT_NPROC`` a real fork-bomb limit, denies reading other processes' environments and
  killing the parent, and lets cleanup kill *every* process of the uid -- including daemons
  that double-forked and called ``setsid`` -- with one ``kill(-1, SIGKILL)`` issued as that uid.

What is available is decided at runtime by :func:`probe` (each primitive is tried once in a
throw-away child) and cached per process. ``docs/rewards.md`` lists what degrades without them.
"""

from __future__ import annotations

import atexit
import ctypes
import dataclasses
import errno
import fcntl
import functools
import os
import shutil
import subprocess
import tempfile

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38
PR_SET_CHILD_SUBREAPER = 36

# /tmp last: the run directory usually lives under /tmp and must still resolve while binding.
TMP_DIRS = ("/var/tmp", "/dev/shm", "/tmp")
UID_BASE = 61000
UID_COUNT = 1000
MARKER_VAR = "R1MEGA_SANDBOX"

_libc = ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def unshare(flags: int) -> None:
    """Move the calling process into new namespaces (``unshare(2)``)."""
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")


def make_mounts_private() -> None:
    """Stop mount events propagating back to the host (first step in a new mount namespace)."""
    _check(_libc.mount(b"none", b"/", None, ctypes.c_ulong(MS_REC | MS_PRIVATE), None), "mount private")


def bind_mount(source: str, target: str) -> None:
    """Bind ``source`` over ``target`` (inside the current mount namespace)."""
    _check(_libc.mount(source.encode(), target.encode(), None, ctypes.c_ulong(MS_BIND | MS_REC), None),
           f"bind {target}")


def prctl(option: int, value: int) -> None:
    """``prctl(option, value, 0, 0, 0)``."""
    _check(_libc.prctl(ctypes.c_int(option), ctypes.c_ulong(value), ctypes.c_ulong(0),
                       ctypes.c_ulong(0), ctypes.c_ulong(0)), "prctl")


@dataclasses.dataclass(frozen=True)
class Capabilities:
    """What this host lets the sandbox use (see module docstring)."""

    netns_flags: int
    """``unshare`` flags that give a child its own network namespace; 0 when impossible."""
    private_tmp: bool
    """Root can create a mount namespace and bind the run directory over the temp dirs."""
    drop_privileges: bool
    """The process is root and can run children as a dedicated uid."""


def _try_in_child(setup) -> bool:
    """Run ``setup`` as a ``preexec_fn`` of ``/bin/true``; True when the child exec'd and exited 0."""
    try:
        return subprocess.run(["true"], preexec_fn=setup, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=10).returncode == 0
    except (subprocess.SubprocessError, OSError):
        return False


def _private_tmp_setup(directory: str):
    def setup() -> None:
        unshare(CLONE_NEWNS | CLONE_NEWNET)
        make_mounts_private()
        for target in TMP_DIRS:
            if os.path.isdir(target):
                bind_mount(directory, target)

    return setup


@functools.lru_cache(maxsize=1)
def probe() -> Capabilities:
    """Find out (once per process) which isolation primitives work here."""
    is_root = os.geteuid() == 0
    netns_flags = 0
    for flags in ((CLONE_NEWNET,) if is_root else (CLONE_NEWUSER | CLONE_NEWNET,)):
        if _try_in_child(lambda f=flags: unshare(f)):
            netns_flags = flags
            break
    private_tmp = False
    if is_root:
        with tempfile.TemporaryDirectory(prefix="r1mega-probe-") as directory:
            private_tmp = _try_in_child(_private_tmp_setup(directory))
    return Capabilities(netns_flags=netns_flags, private_tmp=private_tmp, drop_privileges=is_root)


@dataclasses.dataclass(frozen=True)
class SandboxIdentity:
    """Who a worker slot's sandboxed programs run as, and how to find them again."""

    uid: int | None
    """Dedicated uid (root only), or None to run as the worker's own uid."""
    marker: str
    """Value of the ``R1MEGA_SANDBOX`` variable put in every sandboxed child's environment."""

    @property
    def scratch_dir(self) -> str:
        """Parent of this identity's run directories; whoever sweeps the identity removes it.

        A worker killed mid-run cannot delete its run directory itself, so run directories
        live here and the pool deletes the whole tree after replacing a worker.
        """
        return os.path.join(tempfile.gettempdir(), self.marker)


_held_claims: dict[int, int] = {}


def _lock_dir() -> str:
    path = os.path.join(tempfile.gettempdir(), "r1mega-sandbox-uids")
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def claim_uid(base: int = UID_BASE, count: int = UID_COUNT) -> int:
    """Reserve an unused sandbox uid for this process (released when the process exits).

    The reservation is an exclusive ``flock`` on ``$TMPDIR/r1mega-sandbox-uids/<uid>.lock``;
    it disappears with the process that holds it, so a crashed manager frees its uids.
    """
    directory = _lock_dir()
    for uid in range(base, base + count):
        if uid in _held_claims:
            continue
        fd = os.open(os.path.join(directory, f"{uid}.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                continue
            raise
        _held_claims[uid] = fd
        return uid
    raise RuntimeError(f"no free sandbox uid in [{base}, {base + count})")


def release_uid(uid: int) -> None:
    """Give back a uid claimed by :func:`claim_uid` in this process."""
    fd = _held_claims.pop(uid, None)
    if fd is not None:
        os.close(fd)


def claim_clean_uid(attempts: int = 16) -> int:
    """Claim a uid and sweep it; skip uids that keep processes we cannot remove.

    A previous owner without a reaper may have left zombies that PID 1 never collects; they
    would count against the uid's process limit forever, so such a uid is passed over.
    """
    from r1mega.rewards.execution import procs

    dirty = []
    try:
        for _ in range(attempts):
            uid = claim_uid()
            procs.kill_uid(uid)
            if procs.wait_uid_gone(uid, timeout=0.3):
                return uid
            dirty.append(uid)
        raise RuntimeError(f"no clean sandbox uid found after {attempts} attempts")
    finally:
        for uid in dirty:
            release_uid(uid)


def new_identity(drop_privileges: bool) -> SandboxIdentity:
    """A fresh identity: a claimed uid when running as root (and asked to), plus a unique marker."""
    uid = claim_clean_uid() if drop_privileges and os.geteuid() == 0 else None
    return SandboxIdentity(uid=uid, marker=f"r1mega-{os.getpid()}-{os.urandom(6).hex()}")


_identity: SandboxIdentity | None = None
_subreaper = False


def become_subreaper() -> None:
    """Adopt orphaned descendants (``PR_SET_CHILD_SUBREAPER``), so this process can reap them.

    A killed daemon's zombie is otherwise handed to PID 1, and in containers PID 1 often never
    reaps: the zombies would pile up and count against the sandbox uid's ``RLIMIT_NPROC``.
    Only pool workers do this -- every child of a worker is a sandbox process, so reaping all
    of them is safe there, and would not be in a host application.
    """
    global _subreaper
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    _subreaper = True


def is_subreaper() -> bool:
    """Whether :func:`become_subreaper` was called in this process."""
    return _subreaper


def set_identity(identity: SandboxIdentity) -> None:
    """Install the identity this process's sandboxed children use (done by pool workers)."""
    global _identity
    _identity = identity


def current_identity() -> SandboxIdentity:
    """This process's identity; created on first use when none was installed."""
    global _identity
    if _identity is None:
        _identity = new_identity(drop_privileges=True)
        atexit.register(shutil.rmtree, _identity.scratch_dir, True)
    return _identity
