"""r1mega.lifeline: a helper armed to its parent dies when the parent is SIGKILLed; one whose
parent died before it could arm itself exits at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parents[2]

PARENT = """
import subprocess, sys, time
from r1mega import lifeline
armed = sys.argv[1] == "armed"
child = subprocess.Popen(["sleep", "120"], preexec_fn=lifeline.preexec() if armed else None)
print(child.pid, flush=True)
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal is Linux's")
@pytest.mark.parametrize("armed", [True, False], ids=["armed", "unarmed"])
def test_an_armed_helper_dies_with_its_killed_parent(armed):
    parent = subprocess.Popen([sys.executable, "-c", PARENT, "armed" if armed else "plain"], cwd=REPO,
                              stdout=subprocess.PIPE, text=True)
    helper = int(parent.stdout.readline())
    try:
        assert _alive(helper)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 5
        while _alive(helper) and time.monotonic() < deadline:
            time.sleep(0.05)
        # the unarmed case is the control: without the lifeline the helper runs on, orphaned
        assert _alive(helper) is not armed
    finally:
        if _alive(helper):
            os.kill(helper, signal.SIGKILL)


def test_a_helper_whose_parent_is_already_gone_exits():
    # arm() is told a parent pid that is not the actual parent: as when the parent died
    # between the fork and the prctl and the helper was re-parented.
    out = subprocess.run([sys.executable, "-c", "import os; from r1mega import lifeline; "
                          "lifeline.arm(os.getppid() + 1000000); print('still here')"],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 137 and "still here" not in out.stdout
