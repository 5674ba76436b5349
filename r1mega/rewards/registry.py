"""Name -> reward component class.

Configs refer to components by name (``math_accuracy``, ``format``, ...). A project can add its
own with :func:`register`; the class must subclass :class:`~r1mega.rewards.core.component.Component`,
set ``name`` and an ``Options`` dataclass, and be importable in worker processes if it returns
jobs (job functions are pickled by reference).
"""

from __future__ import annotations

from typing import Any, Mapping

from r1mega.config.errors import ConfigError
from r1mega.rewards.code.accuracy import CodeAccuracy
from r1mega.rewards.core.component import Component
from r1mega.rewards.core.dictconf import from_dict
from r1mega.rewards.math.accuracy import MathAccuracy
from r1mega.rewards.text.format_reward import FormatReward
from r1mega.rewards.text.language_reward import LanguageConsistency
from r1mega.rewards.text.penalties import OverlongPenalty, RepetitionPenalty

_REGISTRY: dict[str, type[Component]] = {}


def register(cls: type[Component]) -> type[Component]:
    """Make ``cls`` available under ``cls.name``; usable as a class decorator."""
    if not cls.name or not hasattr(cls, "Options"):
        raise ValueError(f"{cls.__name__} needs a 'name' and an 'Options' dataclass")
    _REGISTRY[cls.name] = cls
    return cls


for _cls in (MathAccuracy, CodeAccuracy, FormatReward, LanguageConsistency, OverlongPenalty, RepetitionPenalty):
    register(_cls)


def names() -> list[str]:
    """Registered component names, sorted."""
    return sorted(_REGISTRY)


def component_class(name: str, path: str = "name") -> type[Component]:
    """The class registered as ``name``; ValueError listing the known names otherwise."""
    if name not in _REGISTRY:
        raise ConfigError(f"{path}: unknown reward component {name!r} (known: {', '.join(names())})")
    return _REGISTRY[name]


def build_options(name: str, options: Mapping[str, Any], path: str = "options") -> Any:
    """Validate ``options`` into the component's typed Options dataclass."""
    return from_dict(component_class(name).Options, dict(options), path)


def build(name: str, options: Mapping[str, Any], path: str = "options") -> Component:
    """Instantiate component ``name`` with validated ``options``."""
    return component_class(name)(build_options(name, options, path))
