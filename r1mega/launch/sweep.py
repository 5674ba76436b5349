"""Hydra multirun syntax -> sweep points, one Slurm job and one run directory each.

``r1mega-launch -m optim.lr=1e-5,3e-5 trainer.seed=range(0,2)`` means what it means to Hydra's
basic sweeper: the cartesian product of every swept key, here 4 points. The overrides are
parsed with Hydra's own grammar (so ``choice(...)``, ``range(...)``, quoting and ``+key=``
behave as in ``r1mega-train -m``), but the expansion happens here: each point becomes its own
job instead of a loop inside one process, so points run in parallel and are requeued
independently.

Without ``-m`` a swept value is an error, as in Hydra. Keys prefixed ``plan.`` are for the
preflight planner only and are not passed to ``r1mega-train``; they may be swept too.

A point's run directory is ``<runs_dir>/<name>`` for a single run and
``<runs_dir>/<name>/<index>`` for a sweep (Hydra's multirun layout), fixed at submission so
a requeued job finds its own checkpoints again.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from r1mega.config.errors import ConfigError

PLAN_PREFIX = "plan."


@dataclass(frozen=True)
class Point:
    """One run of a sweep (or the single run)."""

    index: int
    """Position in the sweep, 0-based."""
    overrides: tuple[str, ...]
    """All of this point's overrides, swept values substituted."""
    swept: tuple[tuple[str, str], ...]
    """(key, value) of the keys that vary across the sweep."""

    @property
    def train_overrides(self) -> list[str]:
        return [o for o in self.overrides if not o.lstrip("+~").startswith(PLAN_PREFIX)]

    @property
    def plan_overrides(self) -> list[str]:
        return [o for o in self.overrides if o.lstrip("+~").startswith(PLAN_PREFIX)]

    def label(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.swept) or "-"


def expand(overrides: list[str], multirun: bool) -> list[Point]:
    """The points of ``overrides`` (one point when nothing is swept)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as err:
        raise ConfigError(f"cannot parse overrides: {str(err).splitlines()[0]}") from None
    options: list[list[tuple[str, str | None]]] = []
    for o in parsed:
        if not o.is_sweep_override():
            options.append([(o.input_line, None)])
            continue
        if not multirun:
            raise ConfigError(f"override {o.input_line!r} sweeps several values; add -m/--multirun")
        try:
            values = list(o.sweep_string_iterator())
        except Exception as err:  # glob() needs a config loader Hydra does not give us
            raise ConfigError(f"cannot expand sweep {o.input_line!r}: {err}") from None
        key = o.get_key_element()
        options.append([(f"{key}={v}", v) for v in values])
    points = []
    for i, combo in enumerate(itertools.product(*options)):
        swept = tuple((line.split("=", 1)[0], v) for line, v in combo if v is not None)
        points.append(Point(i, tuple(line for line, _ in combo), swept))
    return points


def run_dir(runs_root: str, name: str, point: Point, sweep: bool) -> str:
    """Where this point's ``r1mega-train`` writes config.yaml, metrics.jsonl, summary.json."""
    base = f"{runs_root.rstrip('/')}/{name}"
    return f"{base}/{point.index}" if sweep else base


def is_sweep(points: list[Point]) -> bool:
    return len(points) > 1 or any(p.swept for p in points)
