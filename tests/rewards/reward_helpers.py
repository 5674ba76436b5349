"""Helpers shared by the reward tests: completion builders and /proc scans for leftovers.

(Named uniquely because test directories without __init__.py share one import namespace.)
"""

from __future__ import annotations

import os
import time

from r1mega.rewards.execution.isolation import MARKER_VAR


def think(answer_part: str, reasoning: str = "Let me think.") -> str:
    """An R1-style completion: reasoning in <think></think>, then ``answer_part``."""
    return f"<think>\n{reasoning}\n</think>\n{answer_part}"


def python_block(code: str) -> str:
    """A completion whose final part is one fenced Python program."""
    return think(f"Here is the program.\n```python\n{code}\n```\n")


def cpp_block(code: str) -> str:
    """A completion whose final part is one fenced C++ program."""
    return think(f"Here is the program.\n```cpp\n{code}\n```\n")


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def processes_containing(needle: str, where: str = "cmdline") -> list[int]:
    """Pids (other than ours) whose /proc/<pid>/<where> contains ``needle``."""
    me, data = os.getpid(), needle.encode()
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != me
            and data in _read(f"/proc/{p}/{where}")]


def sandbox_processes() -> list[int]:
    """Processes started by any reward sandbox (they all carry the marker variable)."""
    return processes_containing(f"{MARKER_VAR}=", where="environ")


def wait_until_gone(pids_fn, timeout: float = 2.0) -> list[int]:
    """Poll ``pids_fn`` until it returns nothing or ``timeout`` passes; returns what is left."""
    deadline = time.monotonic() + timeout
    left = pids_fn()
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = pids_fn()
    return left
