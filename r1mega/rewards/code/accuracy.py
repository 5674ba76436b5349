"""Code accuracy: run the completion's last fenced program against the item's tests.

The program is the last ```` ```python ```` or ```` ```cpp ```` block after ``</think>``. It
runs in the sandbox (:mod:`r1mega.rewards.code.runner`, :mod:`r1mega.rewards.execution.sandbox`) inside
a pool worker; each run yields one verdict of ``passed``, ``wrong_answer``, ``timeout``,
``memory``, ``runtime_error`` or ``compile_error``.

The reward is 1.0 when every test passes (``mode="all_pass"``, the R1 setting) or the fraction
of passing tests (``mode="fraction"``). In ``all_pass`` mode the first failure stops the run,
since later tests cannot change the reward.
"""

from __future__ import annotations

from dataclasses import dataclass

from r1mega.rewards.code.tests import parse_tests
from r1mega.rewards.core.component import Component, one_of, positive
from r1mega.rewards.core.extract import last_code_block, split_reasoning
from r1mega.rewards.core.types import Job, Outcome, RewardItem, Score

_LANGUAGES = ("python", "cpp")


@dataclass(frozen=True)
class CodeAccuracyOptions:
    """Options of the ``code_accuracy`` component (frozen: it travels to workers as job data)."""

    languages: tuple[str, ...] = ("python", "cpp")
    """Fenced-block languages accepted (``python``, ``cpp``)."""
    require_think: bool = True
    """Without ``</think>`` there is no valid program."""
    mode: str = "all_pass"
    """``all_pass`` (1.0 only if every test passes) or ``fraction`` (share of passing tests)."""
    timeout_s: float = 4.0
    """Wall-clock limit per test run; the CPU limit is the same, rounded up to whole seconds."""
    memory_mb: int = 1024
    """Address-space limit per run."""
    max_output_kb: int = 8192
    """Largest output (stdout, stderr, any file) a run may write."""
    max_processes: int = 32
    """Processes/threads a run may create (exact with a dedicated uid)."""
    max_open_files: int = 64
    """Open file descriptors per run."""
    compile_timeout_s: float = 30.0
    """Wall-clock limit of the C++ compilation."""
    compile_memory_mb: int = 2048
    """Address-space limit of the C++ compilation."""
    network: str = "auto"
    """``auto`` (namespace when possible, else the Python socket block), ``namespace`` (required) or ``preamble``."""
    drop_privileges: str = "auto"
    """``auto`` (dedicated uid when the worker is root), ``always`` (required) or ``never``
    (as root this also lifts the process limit: the kernel does not apply RLIMIT_NPROC to root)."""
    python: str | None = None
    """Interpreter for Python candidates; default: this one, or a system one the sandbox uid can run."""
    python_flags: tuple[str, ...] = ("-I", "-S")
    """Interpreter flags: isolated mode, no site-packages (stdlib only, faster start)."""
    cxx: str = "g++"
    """C++ compiler."""
    cxx_flags: tuple[str, ...] = ("-O2", "-std=c++17")
    """C++ compiler flags."""

    def __post_init__(self) -> None:
        for language in self.languages:
            one_of(language, _LANGUAGES, "languages[]")
        one_of(self.mode, ("all_pass", "fraction"), "mode")
        one_of(self.network, ("auto", "namespace", "preamble"), "network")
        one_of(self.drop_privileges, ("auto", "always", "never"), "drop_privileges")
        for name in ("timeout_s", "memory_mb", "max_output_kb", "max_processes", "max_open_files",
                     "compile_timeout_s", "compile_memory_mb"):
            positive(getattr(self, name), name)
        object.__setattr__(self, "languages", tuple(self.languages))
        object.__setattr__(self, "python_flags", tuple(self.python_flags))
        object.__setattr__(self, "cxx_flags", tuple(self.cxx_flags))

    @property
    def stop_on_first_failure(self) -> bool:
        """Later tests cannot change an all-pass reward once one has failed."""
        return self.mode == "all_pass"


def run_code_job(language: str, code: str, spec, opts: CodeAccuracyOptions) -> dict:
    """Worker entry point (imports the sandbox machinery only where it runs)."""
    from r1mega.rewards.code.runner import run_code_tests

    return run_code_tests(language, code, spec, opts)


def _finish(language: str, num_tests: int, mode: str):
    def finish(outcome: Outcome) -> Score:
        if outcome.status != "ok":
            status = "timeout" if outcome.status == "timeout" else "error"
            error = None if status == "timeout" else f"code run failed: {outcome.error}"
            return Score(0.0, status, error=error, details={"language": language})
        verdicts = outcome.value["verdicts"]
        passed = sum(v == "passed" for v in verdicts)
        value = passed / num_tests if mode == "fraction" else float(passed == num_tests)
        details = {"language": language, "verdicts": verdicts}
        if outcome.value.get("compile_output"):
            details["compile_output"] = outcome.value["compile_output"]
        return Score(value, "passed" if passed == num_tests else "failed", details=details)

    return finish


class CodeAccuracy(Component):
    """See the module docstring."""

    name = "code_accuracy"
    Options = CodeAccuracyOptions
    required_fields = ("tests",)

    def plan(self, item: RewardItem) -> Score | Job:
        opts = self.options
        spec = parse_tests(item.tests)
        _, final = split_reasoning(item.completion, require_close=opts.require_think)
        block = last_code_block(final, opts.languages) if final is not None else None
        if block is None:
            return Score(0.0, "no_code")
        compile_s = opts.compile_timeout_s + 1.0 if block.language == "cpp" else 0.0
        deadline = compile_s + spec.num_runs * (opts.timeout_s + 1.5) + 5.0
        return Job(
            fn=run_code_job,
            args=(block.language, block.code, spec, opts),
            timeout_s=deadline,
            finish=_finish(block.language, spec.num_runs, opts.mode),
        )
