"""The suite's own guards (tests/conftest.py): process groups a test builds are destroyed after
it, and a test that leaves threads behind fails, naming itself, while short-lived threads pass."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

CASES = '''
import os
import threading
import time

import torch.distributed as dist

from r1mega.parallel.config import ParallelConfig
from r1mega.parallel.dims import ParallelDims

KEPT = []


def test_megatron_groups_left_initialised():
    ParallelDims.resolve(ParallelConfig(), 1).build("gloo")  # never destroyed by the test


def test_megatron_groups_were_destroyed():
    assert not dist.is_initialized()


def test_group_kept_alive_leaks():
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=os.environ["LEAK_PORT"])
    dist.init_process_group("gloo", rank=0, world_size=1)
    KEPT.append(dist.new_group([0]))  # outlives destroy_process_group: its threads stay


def test_after_the_leak_is_reported_once():
    assert not dist.is_initialized()  # the previous tests' groups were destroyed


def test_short_lived_threads_pass():
    for _ in range(8):
        threading.Thread(target=time.sleep, args=(0.5,)).start()  # not joined: still running at the end
'''


def test_leaks_fail_the_test_that_leaks_and_groups_are_destroyed(tmp_path):
    from tests.conftest import free_port

    (tmp_path / "test_cases.py").write_text(CASES)
    env = dict(os.environ, PYTHONPATH=str(REPO), LEAK_PORT=str(free_port()), PYTHONWARNINGS="ignore")
    out = subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider",
                          "-q", "-rA", str(tmp_path / "test_cases.py")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    text = out.stdout
    assert out.returncode == 1, text[-3000:]
    assert "PASSED test_cases.py::test_megatron_groups_left_initialised" in text, text[-3000:]
    assert "PASSED test_cases.py::test_megatron_groups_were_destroyed" in text, text[-3000:]
    assert "ERROR test_cases.py::test_megatron_groups_left_initialised" not in text, text[-3000:]
    assert "ERROR test_cases.py::test_group_kept_alive_leaks" in text, text[-3000:]
    assert "test_cases.py::test_group_kept_alive_leaks left" in text and "gloo" in text, text[-3000:]
    assert "PASSED test_cases.py::test_after_the_leak_is_reported_once" in text, text[-3000:]
    assert "ERROR test_cases.py::test_after_the_leak_is_reported_once" not in text, text[-3000:]
    assert "PASSED test_cases.py::test_short_lived_threads_pass" in text, text[-3000:]
    assert "ERROR test_cases.py::test_short_lived_threads_pass" not in text, text[-3000:]
    assert "1 error" in text, text[-3000:]
