"""Test specifications for code rewards, output comparison, and per-test verdicts.

Two test formats are accepted (optionally JSON-encoded as a string, as many datasets store
them):

``{"inputs": [...], "outputs": [...]}``
    stdin/stdout cases (LiveCodeBench, Codeforces style). The program runs once per case with
    the input on stdin; its stdout must match the output line by line after whitespace
    normalisation (runs of blanks collapse to one, leading/trailing blanks and trailing empty
    lines are ignored). A case given as a list of lines is joined with newlines.

``{"test_code": "...", "entry_point": "optional name"}``
    assert style (HumanEval / MBPP): the test code is appended to the program and the run
    passes when it exits with status 0. With ``entry_point``, ``check(<entry_point>)`` is
    appended too (the HumanEval convention). Python only.

A run ends with one of the verdicts in :data:`VERDICTS`.
"""

from __future__ import annotations

import dataclasses
import json
import signal
from typing import Any

from r1mega.rewards.execution.sandbox import RunResult

VERDICTS = ("passed", "wrong_answer", "timeout", "memory", "runtime_error", "compile_error")
_MEMORY_MARKERS = (b"MemoryError", b"std::bad_alloc", b"Cannot allocate memory")
COMPILE_ERROR_EXIT = 99
COMPILE_ERROR_MARKER = b"R1MEGA_COMPILE_ERROR"


@dataclasses.dataclass(frozen=True)
class TestSpec:
    """Parsed tests of one item."""

    cases: tuple[tuple[str, str], ...] = ()
    """stdin/stdout pairs (empty for assert-style tests)."""
    test_code: str | None = None
    """Assert-style test code appended to the program."""
    entry_point: str | None = None
    """Function passed to ``check`` after the test code (HumanEval convention)."""

    @property
    def num_runs(self) -> int:
        """How many times the program will be run."""
        return 1 if self.test_code is not None else len(self.cases)


def _as_text(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "\n".join(value)
    raise ValueError(f"{where} must be a string (or a list of lines); got {type(value).__name__}")


def parse_tests(tests: Any) -> TestSpec:
    """Validate an item's ``tests`` field; raises ValueError with a precise message."""
    if isinstance(tests, str):
        try:
            tests = json.loads(tests)
        except json.JSONDecodeError as exc:
            raise ValueError(f"field 'tests' is a string but not JSON: {exc}") from None
    if not isinstance(tests, dict):
        raise ValueError(f"field 'tests' must be a mapping; got {type(tests).__name__}")
    if "test_code" in tests:
        code, entry = tests["test_code"], tests.get("entry_point")
        if not isinstance(code, str) or not code.strip():
            raise ValueError("tests.test_code must be a non-empty string")
        if entry is not None and (not isinstance(entry, str) or not entry.isidentifier()):
            raise ValueError(f"tests.entry_point must be an identifier; got {entry!r}")
        return TestSpec(test_code=code, entry_point=entry)
    if "inputs" not in tests or "outputs" not in tests:
        raise ValueError("field 'tests' needs 'inputs' and 'outputs', or 'test_code'")
    inputs, outputs = tests["inputs"], tests["outputs"]
    if not isinstance(inputs, list) or not isinstance(outputs, list):
        raise ValueError("tests.inputs and tests.outputs must be lists")
    if len(inputs) != len(outputs):
        raise ValueError(f"tests.inputs has {len(inputs)} cases but tests.outputs has {len(outputs)}")
    if not inputs:
        raise ValueError("tests.inputs is empty")
    cases = tuple(
        (_as_text(i, f"tests.inputs[{n}]"), _as_text(o, f"tests.outputs[{n}]"))
        for n, (i, o) in enumerate(zip(inputs, outputs))
    )
    return TestSpec(cases=cases)


def normalize_output(text: str) -> list[str]:
    """Lines with whitespace runs collapsed and trailing empty lines dropped."""
    lines = [" ".join(line.split()) for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def outputs_match(actual: str, expected: str) -> bool:
    """Whitespace-normalised line comparison."""
    return normalize_output(actual) == normalize_output(expected)


def verdict(run: RunResult, expected: str | None, cpu_s: int) -> str:
    """Classify one run; ``expected`` is None for assert-style tests (exit status decides)."""
    if run.timed_out or run.signal == signal.SIGXCPU:
        return "timeout"
    if run.output_limited:
        return "runtime_error"
    if any(marker in run.stderr for marker in _MEMORY_MARKERS):
        return "memory"
    if run.signal == signal.SIGKILL:  # not ours: the CPU hard limit, or the OOM killer
        return "timeout" if run.elapsed_s >= cpu_s else "memory"
    if run.exit_code == COMPILE_ERROR_EXIT and COMPILE_ERROR_MARKER in run.stderr:
        return "compile_error"
    if run.exit_code != 0:
        return "runtime_error"
    if expected is None:
        return "passed"
    actual = run.stdout.decode("utf-8", errors="replace")
    return "passed" if outputs_match(actual, expected) else "wrong_answer"
