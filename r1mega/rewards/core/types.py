"""The small value types that flow through the reward subsystem.

A reward computation has three stages, and each has its own type:

1. :class:`RewardItem` -- what the caller hands in: one completion plus the ground truth it is
   scored against (``answer`` for maths, ``tests`` for code) and the ``data_source`` that picks
   the reward recipe.
2. :class:`Score` / :class:`Job` -- what a reward *component* produces when it plans its work.
   Cheap components (format, length) return a :class:`Score` at once. Components that must be
   isolated (sympy can hang, candidate programs are hostile) return a :class:`Job`: a
   module-level function plus picklable arguments that the worker pool runs under a hard
   deadline. The pool answers with an :class:`Outcome`, which the component turns into a Score.
3. :class:`RewardResult` -- what the caller gets back: the weighted total, one float per
   component and an error string when the item could not be scored at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping


@dataclass
class RewardItem:
    """One completion to score."""

    completion: str
    """The model's generated text (everything after the prompt)."""
    data_source: str
    """Name of the reward recipe to apply (a key of ``RewardConfig.sources``)."""
    answer: Any = None
    """Gold answer for maths: a string (LaTeX allowed), a number, or a list of accepted answers."""
    tests: Any = None
    """Code tests: ``{"inputs": [...], "outputs": [...]}`` or ``{"test_code": "..."}``."""
    prompt: str | None = None
    """The prompt, for components that need it (none of the built-in ones do)."""
    num_tokens: int | None = None
    """Length of the completion in tokens, used by the ``overlong`` length penalty."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """Anything else the caller wants carried along; ignored by the built-in components."""

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> "RewardItem":
        """Build an item from a dict; raises ValueError naming the first missing or bad field."""
        if not isinstance(data, Mapping):
            raise ValueError(f"item must be a mapping, got {type(data).__name__}")
        for name in ("completion", "data_source"):
            if name not in data or data[name] is None:
                raise ValueError(f"missing field '{name}'")
            if not isinstance(data[name], str):
                raise ValueError(f"field '{name}' must be a string, got {type(data[name]).__name__}")
        num_tokens = data.get("num_tokens")
        if num_tokens is not None and (isinstance(num_tokens, bool) or not isinstance(num_tokens, int)):
            raise ValueError(f"field 'num_tokens' must be an integer, got {num_tokens!r}")
        metadata = data.get("metadata") or {}
        if not isinstance(metadata, Mapping):
            raise ValueError("field 'metadata' must be a mapping")
        return cls(
            completion=data["completion"],
            data_source=data["data_source"],
            answer=data.get("answer"),
            tests=data.get("tests"),
            prompt=data.get("prompt"),
            num_tokens=num_tokens,
            metadata=dict(metadata),
        )


@dataclass
class Score:
    """The value of one reward component for one item."""

    value: float
    """The component's reward before weighting."""
    status: str = "ok"
    """Short machine-readable outcome, e.g. ``ok``, ``no_answer``, ``timeout``, ``wrong_answer``."""
    error: str | None = None
    """Set when the item could not be scored (bad input, crashed worker), not for a wrong answer."""
    details: dict[str, Any] = field(default_factory=dict)
    """Extra facts for debugging (extracted answer, per-test verdicts, ...)."""


@dataclass
class Outcome:
    """What the worker pool reports for one :class:`Job`."""

    status: str
    """``ok`` (value is the function's return), ``timeout``, ``error`` (it raised) or ``crashed``."""
    value: Any = None
    """The job function's return value when ``status == "ok"``."""
    error: str | None = None
    """A short description when the job did not return normally."""
    elapsed_s: float = 0.0
    """Wall time the job ran for, as seen by whoever ran it."""


@dataclass
class Job:
    """Work that must run isolated under a deadline.

    ``fn`` must be a module-level function (it is pickled by reference) and ``args`` must be
    picklable; for de-duplication and caching they should also be hashable.
    """

    fn: Callable[..., Any]
    """The function to run in a worker."""
    args: tuple
    """Positional arguments for ``fn``."""
    timeout_s: float
    """Hard deadline: past it the worker is killed and the job scores as a timeout."""
    finish: Callable[[Outcome], Score]
    """Turns the pool's outcome into a Score (runs in the calling process)."""
    soft_timeout_s: float | None = None
    """Optional earlier deadline raised inside the worker as an exception (cheap recovery)."""
    cacheable: bool = False
    """Whether an ``ok`` outcome may be reused for identical ``(fn, args)`` later on."""

    def key(self) -> tuple | None:
        """Identity used for de-duplication and caching, or None when args are unhashable."""
        try:
            key = (self.fn.__module__, self.fn.__qualname__, self.args)
            hash(key)
        except TypeError:
            return None
        return key


@dataclass
class RewardResult:
    """The reward of one item."""

    reward: float
    """Weighted sum of the component values."""
    components: dict[str, float] = field(default_factory=dict)
    """Unweighted value of each component, keyed by component key."""
    error: str | None = None
    """Why the item (or one of its components) could not be scored; None when all went well."""
    details: dict[str, Any] = field(default_factory=dict)
    """Per-component status and debugging facts, keyed by component key."""

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict view (JSON-serialisable when the details are)."""
        return {
            "reward": self.reward,
            "components": dict(self.components),
            "error": self.error,
            "details": dict(self.details),
        }
