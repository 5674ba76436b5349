"""Typed configuration of the reward subsystem.

A :class:`RewardConfig` maps each ``data_source`` name to a :class:`SourceRewardConfig`: the list
of reward components (by registry name) with their weights and options. The total reward of
an item is ``sum(weight * value)`` over its source's components. Example (YAML)::

    num_workers: 8
    sources:
      math:
        components:
          - {name: math_accuracy, weight: 1.0, options: {timeout_s: 3.0}}
          - {name: format, weight: 1.0}
          - {name: language, weight: 1.0, options: {target: en}}

All classes are plain dataclasses with defaults, so ``RewardConfig()`` is the default recipe
and ``RewardConfig.from_dict(d)`` (or ``RewardConfig(**d)`` with nested dicts, as produced by
``OmegaConf.to_object``) builds one from plain data. Construction validates everything --
component names, option names, types and ranges -- and raises ``ValueError`` naming the
field, e.g. ``config.sources.math.components[0].options.timeout_s: must be > 0; got -1``.
Giving ``sources`` replaces the defaults; :func:`default_sources` returns them for merging.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

from r1mega.config.errors import ConfigError
from r1mega.rewards.core.dictconf import coerce_fields, from_dict

_START_METHODS = ("forkserver", "fork", "spawn")


@dataclass
class ComponentConfig:
    """One reward component of a data source."""

    name: str = ""
    """Registry name: math_accuracy, code_accuracy, format, language, overlong, repetition."""
    weight: float = 1.0
    """Multiplier of the component's value in the total reward."""
    key: str | None = None
    """Name of the value in results; defaults to ``name`` (set it to use a component twice)."""
    options: dict[str, Any] = field(default_factory=dict)
    """Component options, validated against the component's Options dataclass."""

    def __post_init__(self) -> None:
        coerce_fields(self, "component")
        from r1mega.rewards import registry  # late: registry imports every component module

        registry.build_options(self.name, self.options, "options")
        if not math.isfinite(self.weight):
            raise ConfigError(f"weight must be finite; got {self.weight}")

    @property
    def result_key(self) -> str:
        """The key this component's value is reported under."""
        return self.key or self.name


@dataclass
class SourceRewardConfig:
    """The reward recipe of one data source."""

    components: list[ComponentConfig] = field(default_factory=list)
    """Components whose weighted values add up to the item's reward."""

    def __post_init__(self) -> None:
        self.components = [
            c if isinstance(c, ComponentConfig) else from_dict(ComponentConfig, c, f"components[{i}]")
            for i, c in enumerate(self.components)
        ]
        if not self.components:
            raise ConfigError("components must not be empty")
        keys = [c.result_key for c in self.components]
        duplicates = sorted({k for k in keys if keys.count(k) > 1})
        if duplicates:
            raise ConfigError(f"components: duplicate key {duplicates[0]!r} (set 'key' to tell them apart)")


def _component(name: str, weight: float = 1.0, **options: Any) -> ComponentConfig:
    return ComponentConfig(name=name, weight=weight, options=options)


def default_sources() -> dict[str, SourceRewardConfig]:
    """The default recipe: accuracy + format for ``math``, ``code`` and ``synthetic``.

    ``synthetic`` is the bundled arithmetic task: integer answers in ``\\boxed{}`` after
    ``</think>``, which the maths fast path decides without sympy.
    """
    return {
        "math": SourceRewardConfig([_component("math_accuracy"), _component("format")]),
        "code": SourceRewardConfig([_component("code_accuracy"), _component("format")]),
        "synthetic": SourceRewardConfig([_component("math_accuracy"), _component("format")]),
    }


@dataclass
class RewardConfig:
    """Configuration of :class:`~r1mega.rewards.manager.RewardManager`."""

    sources: dict[str, SourceRewardConfig] = field(default_factory=default_sources)
    """data_source name -> its reward recipe."""
    num_workers: int | None = None
    """Worker processes; None: one per CPU (at most 8); 0: run everything in the calling process (tests only)."""
    start_method: str = "forkserver"
    """How workers start: ``forkserver`` (safe in threaded trainers, fast respawn), ``fork`` or ``spawn``."""
    worker_memory_mb: int | None = 8192
    """Soft address-space limit of each worker (sympy blow-ups raise MemoryError instead of swapping)."""
    cache_size: int = 65536
    """Entries of the cross-batch cache of maths verdicts (0 disables it)."""
    drop_privileges: bool = True
    """Reserve a dedicated sandbox uid per worker when running as root (see isolation.py)."""

    def __post_init__(self) -> None:
        coerce_fields(self, "config")
        if not self.sources:
            raise ConfigError("config.sources must name at least one data source")
        if self.num_workers is not None and self.num_workers < 0:
            raise ConfigError(f"config.num_workers must be >= 0 or None; got {self.num_workers}")
        if self.start_method not in _START_METHODS:
            raise ConfigError(f"config.start_method must be one of {', '.join(_START_METHODS)}; got {self.start_method!r}")
        if self.worker_memory_mb is not None and self.worker_memory_mb <= 0:
            raise ConfigError(f"config.worker_memory_mb must be > 0 or None; got {self.worker_memory_mb}")
        if self.cache_size < 0:
            raise ConfigError(f"config.cache_size must be >= 0; got {self.cache_size}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "RewardConfig":
        """Build from plain data (JSON/YAML/OmegaConf.to_object); ValueError names the bad field."""
        return from_dict(cls, data or {}, "config")

    def resolved_workers(self) -> int:
        """``num_workers`` with None replaced by the CPU count (capped at 8)."""
        if self.num_workers is not None:
            return self.num_workers
        return max(1, min(8, os.cpu_count() or 1))
