"""Compile and run one candidate program against its tests; runs inside a worker process.

Python programs run as ``python -I -S -c BOOT solution.py``. The boot snippet compiles the file
itself (a ``SyntaxError`` becomes the ``compile_error`` verdict rather than a runtime error)
and, when the run has no network namespace, first replaces the socket constructors with ones
that raise ``PermissionError`` -- the *fallback* network block. It is a guard against casual
network use by Python programs, not a security boundary (``ctypes``, ``os.system`` or a C++
program get around it); the network namespace is the real one.

C++ programs are compiled by ``g++`` inside the same sandbox (its own, larger limits), then
``./solution`` runs once per test case.
"""

from __future__ import annotations

import os
import shutil
import sys

from r1mega.rewards.code.tests import COMPILE_ERROR_EXIT, COMPILE_ERROR_MARKER, TestSpec, verdict
from r1mega.rewards.execution import isolation, sandbox

_BOOT = """\
import sys
def _r1mega_boot(block):
    if block:
        import socket, _socket
        def refuse(*args, **kwargs):
            raise PermissionError(13, "network access is disabled in the r1mega sandbox")
        class NoSocket(_socket.socket):
            def __init__(self, *args, **kwargs):
                refuse()
        for module in (socket, _socket):
            module.socket = module.SocketType = NoSocket
            for name in ("create_connection", "create_server", "socketpair", "fromfd",
                         "getaddrinfo", "gethostbyname", "gethostbyname_ex", "gethostbyaddr"):
                if hasattr(module, name):
                    setattr(module, name, refuse)
    path = sys.argv[1]
    with open(path, encoding="utf-8") as f:
        source = f.read()
    try:
        code = compile(source, path, "exec")
    except (SyntaxError, ValueError) as exc:
        sys.stderr.write("%s: %r\\n" % (MARKER, exc))
        sys.exit(EXIT)
    sys.argv = sys.argv[1:]
    exec(code, {"__name__": "__main__", "__file__": path, "__builtins__": __builtins__})
"""


def boot_snippet(block_network: bool) -> str:
    """The ``-c`` program that loads ``solution.py`` (see module docstring)."""
    return (_BOOT.replace("MARKER", repr(COMPILE_ERROR_MARKER.decode())).replace("EXIT", str(COMPILE_ERROR_EXIT))
            + f"_r1mega_boot({block_network!r})\n")


def _others_can_execute(path: str) -> bool:
    """Whether a user with no relation to the file's owner can run ``path``."""
    path = os.path.realpath(path)
    try:
        if not os.stat(path).st_mode & 0o001:
            return False
        parent = os.path.dirname(path)
        while True:
            if not os.stat(parent).st_mode & 0o001:
                return False
            if parent == "/":
                return True
            parent = os.path.dirname(parent)
    except OSError:
        return False


def python_for(configured: str | None, uid: int | None) -> str:
    """The interpreter for candidate programs: configured, this one, or a system one the sandbox uid can run."""
    if configured:
        return configured
    candidates = [os.path.realpath(sys.executable)]
    if uid is None:
        return candidates[0]
    candidates += ["/usr/bin/python3", "/usr/local/bin/python3"]
    for candidate in candidates:
        if _others_can_execute(candidate):
            return os.path.realpath(candidate)
    raise sandbox.SandboxError("no Python interpreter is accessible to the sandbox uid; set options.python")


def resolve_policy(opts, caps: isolation.Capabilities, identity: isolation.SandboxIdentity) -> sandbox.Policy:
    """Turn the ``network`` / ``drop_privileges`` options into a concrete policy for this host."""
    use_uid = opts.drop_privileges != "never" and caps.drop_privileges and identity.uid is not None
    if opts.drop_privileges == "always" and not use_uid:
        raise sandbox.SandboxError("drop_privileges='always' but the reward worker is not root")
    flags = 0
    if opts.network in ("auto", "namespace"):
        if caps.netns_flags:
            flags |= caps.netns_flags
        elif opts.network == "namespace":
            raise sandbox.SandboxError("network='namespace' but this host cannot create network namespaces")
    private_tmp = use_uid and caps.private_tmp
    if private_tmp:
        flags |= isolation.CLONE_NEWNS
    run_identity = identity if use_uid else isolation.SandboxIdentity(None, identity.marker)
    return sandbox.Policy(identity=run_identity, unshare_flags=flags, private_tmp=private_tmp)


def _limits(opts, compile_step: bool = False) -> sandbox.Limits:
    if compile_step:
        return sandbox.Limits(wall_s=opts.compile_timeout_s, cpu_s=int(opts.compile_timeout_s) + 1,
                              memory_mb=opts.compile_memory_mb, output_bytes=256 * 2**20,
                              processes=max(opts.max_processes, 16), open_files=256)
    return sandbox.Limits(wall_s=opts.timeout_s, cpu_s=max(1, int(opts.timeout_s + 0.999)),
                          memory_mb=opts.memory_mb, output_bytes=opts.max_output_kb * 1024,
                          processes=opts.max_processes, open_files=opts.max_open_files)


def _write(directory: str, name: str, text: str, uid: int | None) -> None:
    path = os.path.join(directory, name)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    if uid is not None:
        os.chown(path, uid, uid)


def _program_source(code: str, spec: TestSpec) -> str:
    if spec.test_code is None:
        return code
    tail = f"\n\ncheck({spec.entry_point})\n" if spec.entry_point else "\n"
    return f"{code}\n\n{spec.test_code}{tail}"


def _prepare(language: str, code: str, spec: TestSpec, opts, workdir: str, policy: sandbox.Policy):
    """Write (and for C++ compile) the program; returns (argv, compile_output or None)."""
    uid = policy.identity.uid
    if language == "python":
        _write(workdir, "solution.py", _program_source(code, spec), uid)
        block = not policy.unshare_flags & isolation.CLONE_NEWNET
        argv = [python_for(opts.python, uid), *opts.python_flags, "-c", boot_snippet(block), "solution.py"]
        return argv, None
    if spec.test_code is not None:
        raise ValueError("assert-style tests (test_code) are only supported for Python")
    compiler = shutil.which(opts.cxx)
    if compiler is None:
        raise sandbox.SandboxError(f"C++ compiler {opts.cxx!r} not found")
    _write(workdir, "solution.cpp", code, uid)
    result = sandbox.run([compiler, *opts.cxx_flags, "solution.cpp", "-o", "solution"], workdir, b"",
                         _limits(opts, compile_step=True), policy)
    if result.exit_code != 0:
        return None, result.stderr.decode("utf-8", errors="replace")[-2000:] or "compiler failed"
    return ["./solution"], None


def run_code_tests(language: str, code: str, spec: TestSpec, opts) -> dict:
    """Worker entry point: per-test verdicts of ``code`` (``language``: python or cpp)."""
    identity = isolation.current_identity()
    policy = resolve_policy(opts, isolation.probe(), identity)
    cases = spec.cases if spec.test_code is None else (("", None),)
    limits = _limits(opts)
    with sandbox.run_directory(policy.identity) as workdir:
        argv, compile_output = _prepare(language, code, spec, opts, workdir, policy)
        if argv is None:
            return {"verdicts": ["compile_error"] * len(cases), "compile_output": compile_output}
        verdicts = []
        for stdin, expected in cases:
            result = sandbox.run(argv, workdir, stdin.encode("utf-8"), limits, policy)
            verdicts.append(verdict(result, expected, limits.cpu_s))
            if verdicts[-1] != "passed" and opts.stop_on_first_failure:
                break
    return {"verdicts": verdicts, "compile_output": None}
