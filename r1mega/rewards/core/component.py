"""The interface every reward component implements.

A component turns one :class:`~r1mega.rewards.core.types.RewardItem` into one number. It is built
once per data source from a typed options dataclass (``Options``), then asked to
:meth:`Component.plan` each item:

* cheap, pure-Python, linear-time work (tag checks, length) returns a
  :class:`~r1mega.rewards.core.types.Score` directly, in the calling process;
* work that can hang or must be sandboxed returns a :class:`~r1mega.rewards.core.types.Job`; the
  manager runs all jobs of a batch in the worker pool and hands each outcome to
  ``job.finish``.

``required_fields`` lists the item fields the component needs (``answer``, ``tests``); the
manager reports a missing one as ``missing field 'answer'`` without calling ``plan``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from r1mega.rewards.core.types import Job, RewardItem, Score


class Component:
    """Base class; subclasses set ``name`` and ``Options`` and implement :meth:`plan`."""

    name: ClassVar[str] = ""
    Options: ClassVar[type]
    required_fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, options: Any) -> None:
        assert isinstance(options, self.Options), (type(options), self.Options)
        self.options = options

    def plan(self, item: RewardItem) -> Score | Job:
        """Score ``item`` now, or describe the isolated job that will score it."""
        raise NotImplementedError


def one_of(value: str, allowed: tuple[str, ...], field: str) -> None:
    """Raise ValueError unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        raise ValueError(f"{field} must be one of {', '.join(allowed)}; got {value!r}")


def positive(value: float | int | None, field: str, allow_none: bool = False) -> None:
    """Raise ValueError unless ``value`` is > 0 (or None when allowed)."""
    if value is None and allow_none:
        return
    if value is None or value <= 0:
        raise ValueError(f"{field} must be > 0; got {value!r}")
