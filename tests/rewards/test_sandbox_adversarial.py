"""Hostile candidate programs: each must score 0 within its limit + 1 s and leave nothing behind.

Every program is scored alone through a real worker pool. Afterwards the test checks that no
process carrying the sandbox marker variable (or the program's own cmdline marker) survives and
that the files it tried to create outside its run directory do not exist.

Some guarantees need the reward workers to run as root (dedicated uid, private /tmp); the
checks that depend on them are skipped otherwise, matching docs/rewards.md. A few programs
also run in "plain" mode (no dedicated uid) to exercise the marker-based cleanup.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import time
import uuid

import pytest

from r1mega.rewards import RewardManager
from r1mega.rewards.execution.isolation import probe

from tests.rewards.reward_helpers import (
    cpp_block,
    processes_containing,
    python_block,
    sandbox_processes,
    wait_until_gone,
)

TIMEOUT_S = 1.0
COMPILE_S = 10.0
CAPS = probe()
ROOT_ISOLATION = CAPS.drop_privileges and CAPS.private_tmp
needs_root = pytest.mark.skipif(not ROOT_ISOLATION, reason="needs root (dedicated uid + private /tmp)")
needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")


def _code_source(**options) -> dict:
    opts = {"timeout_s": TIMEOUT_S, "compile_timeout_s": COMPILE_S, "memory_mb": 512, **options}
    return {"components": [{"name": "code_accuracy", "options": opts}]}


@pytest.fixture(scope="module")
def manager():
    config = {"num_workers": 2, "sources": {"code": _code_source(), "code_preamble": _code_source(network="preamble")}}
    with RewardManager(config) as rm:
        rm.score({"completion": python_block("print(42)"), "data_source": "code",
                  "tests": {"inputs": [""], "outputs": ["42"]}})  # start the pool outside the timings
        yield rm


@pytest.fixture(scope="module")
def plain_manager():
    """Sandbox without a dedicated uid or private /tmp: the path used when workers are not root."""
    config = {"num_workers": 1, "drop_privileges": False, "sources": {"code": _code_source(drop_privileges="never")}}
    with RewardManager(config) as rm:
        rm.score({"completion": python_block("print(42)"), "data_source": "code",
                  "tests": {"inputs": [""], "outputs": ["42"]}})
        yield rm


def _score(rm, completion: str, source: str = "code", expected: str = "42", limit: float = TIMEOUT_S,
           allow_error: bool = False):
    item = {"completion": completion, "data_source": source, "tests": {"inputs": [""], "outputs": [expected]}}
    assert rm.pool.wait_ready()  # a worker replaced after the previous program is not part of this one's time
    start = time.monotonic()
    result = rm.score(item)
    elapsed = time.monotonic() - start
    assert allow_error or result.error is None, result.error
    assert result.reward == 0.0, result.details
    assert elapsed <= limit + 1.0, f"took {elapsed:.2f}s"
    assert wait_until_gone(sandbox_processes, timeout=0.5) == []
    # run directories are removed (after a worker was killed, by its replacement)
    assert wait_until_gone(lambda: [d for base in rm.pool.scratch_dirs for d in glob.glob(f"{base}/*")]) == []
    return result


def _verdict(result) -> str:
    return result.details["code_accuracy"]["verdicts"][0]


def test_infinite_loop(manager):
    assert _verdict(_score(manager, python_block("while True:\n    pass"))) == "timeout"


@pytest.mark.parametrize("mode", ["default", "plain"])
def test_sleeping_past_the_limit(request, mode):
    manager = request.getfixturevalue("manager" if mode == "default" else "plain_manager")
    assert _verdict(_score(manager, python_block("import time\ntime.sleep(60)\nprint(42)"))) == "timeout"


def test_fork_bomb(manager):
    code = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    _score(manager, python_block(code))


def test_memory_bomb(manager):
    assert _verdict(_score(manager, python_block("x = bytearray(10**11)\nprint(42)"))) == "memory"


def test_growing_memory(manager):
    code = "chunks = []\nwhile True:\n    chunks.append(bytearray(50 * 2**20))"
    assert _verdict(_score(manager, python_block(code))) in ("memory", "timeout")


def test_huge_output(manager):
    result = _score(manager, python_block("while True:\n    print('x' * 100000)"))
    assert _verdict(result) == "runtime_error"


@pytest.mark.parametrize("mode", ["default", "plain"])
def test_daemonised_child_is_killed(request, mode):
    manager = request.getfixturevalue("manager" if mode == "default" else "plain_manager")
    marker = f"r1mega-daemon-{uuid.uuid4().hex}"
    code = f"""
import os, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(60)", "{marker}"])
    os._exit(0)
time.sleep(0.3)
print("parent done")
"""
    _score(manager, python_block(code))
    assert wait_until_gone(lambda: processes_containing(marker), timeout=0.5) == []


@pytest.mark.parametrize("mode", ["default", "plain"])
def test_daemon_with_cleared_environment_is_killed(request, mode):
    manager = request.getfixturevalue("manager" if mode == "default" else "plain_manager")
    marker = f"r1mega-daemon-{uuid.uuid4().hex}"
    code = f"""
import os, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execve(sys.executable, [sys.executable, "-c", "import time; time.sleep(60)", "{marker}"], {{}})
    os._exit(0)
time.sleep(0.3)
"""
    _score(manager, python_block(code))
    assert wait_until_gone(lambda: processes_containing(marker), timeout=0.5) == []


@pytest.mark.parametrize("mode", ["default", "plain"])
def test_killing_the_parent(request, mode):
    # with a dedicated uid the kill is refused; without one the worker dies and is replaced
    manager = request.getfixturevalue("manager" if mode == "default" else "plain_manager")
    code = "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nimport time\ntime.sleep(0.5)"
    _score(manager, python_block(code), allow_error=True)
    ok = manager.score({"completion": python_block("print(42)"), "data_source": "code",
                        "tests": {"inputs": [""], "outputs": ["42"]}})
    assert ok.reward == 1.0  # the pool still works afterwards


@needs_root
def test_writing_outside_the_sandbox(manager, tmp_path):
    name = f"r1mega-escape-{uuid.uuid4().hex}"
    targets = [f"/tmp/{name}", f"/var/tmp/{name}", f"/dev/shm/{name}", str(tmp_path / name)]
    code = f"""
for path in {targets!r}:
    try:
        with open(path, "w") as f:
            f.write("escaped")
    except OSError:
        pass
"""
    _score(manager, python_block(code))
    assert [t for t in targets if os.path.exists(t)] == []


def test_host_environment_is_invisible(monkeypatch):
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    monkeypatch.setenv("R1MEGA_TEST_SECRET", secret)
    code = """
import os
found = os.environ.get("R1MEGA_TEST_SECRET", "")
for pid in (os.getppid(), 1):
    try:
        data = open(f"/proc/{pid}/environ", "rb").read().decode(errors="replace")
    except OSError:
        continue
    for entry in data.split("\\0"):
        if entry.startswith("R1MEGA_TEST_SECRET="):
            found = entry.split("=", 1)[1]
print(found)
"""
    # start_method=fork: the workers inherit this process's environment, secret included
    config = {"num_workers": 1, "start_method": "fork", "sources": {"code": _code_source()}}
    with RewardManager(config) as rm:
        rm.score({"completion": python_block("print(1)"), "data_source": "code",
                  "tests": {"inputs": [""], "outputs": ["1"]}})  # start the pool outside the timing
        result = _score(rm, python_block(code), expected=secret)
    assert _verdict(result) == "wrong_answer"


def _listener() -> socket.socket:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    return server


def _assert_no_connection(server: socket.socket) -> None:
    with pytest.raises(socket.timeout):
        conn, _ = server.accept()
        conn.close()


@pytest.mark.parametrize("source", ["code", "code_preamble"])
def test_python_sockets_are_blocked(manager, source):
    server = _listener()
    port = server.getsockname()[1]
    code = f"""
import socket
try:
    s = socket.create_connection(("127.0.0.1", {port}), timeout=0.5)
    s.sendall(b"leak")
    print(42)
except OSError as exc:
    print("blocked", type(exc).__name__)
"""
    try:
        result = _score(manager, python_block(code), source=source)
        assert _verdict(result) == "wrong_answer"
        _assert_no_connection(server)
    finally:
        server.close()


def test_preamble_blocks_raw_socket_module(manager):
    code = "import _socket\n_socket.socket()\nprint(42)"
    assert _verdict(_score(manager, python_block(code), source="code_preamble")) == "runtime_error"


@needs_gxx
@pytest.mark.skipif(not CAPS.netns_flags, reason="no network namespace on this host")
def test_cpp_sockets_are_blocked_by_the_namespace(manager):
    server = _listener()
    port = server.getsockname()[1]
    code = f"""
#include <arpa/inet.h>
#include <cstdio>
#include <sys/socket.h>
#include <unistd.h>
int main() {{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{{}};
    addr.sin_family = AF_INET;
    addr.sin_port = htons({port});
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    if (fd >= 0 && connect(fd, (sockaddr*)&addr, sizeof addr) == 0) {{ write(fd, "leak", 4); puts("42"); }}
    else puts("blocked");
}}
"""
    try:
        result = _score(manager, cpp_block(code), limit=COMPILE_S + TIMEOUT_S)
        assert _verdict(result) == "wrong_answer"
        _assert_no_connection(server)
    finally:
        server.close()


@needs_gxx
def test_cpp_fork_bomb(manager):
    code = "#include <unistd.h>\nint main() { while (true) fork(); }"
    _score(manager, cpp_block(code), limit=COMPILE_S + TIMEOUT_S)


@needs_gxx
def test_cpp_infinite_loop(manager):
    code = "int main() { volatile long x = 0; while (true) x++; }"
    result = _score(manager, cpp_block(code), limit=COMPILE_S + TIMEOUT_S)
    assert _verdict(result) == "timeout"
