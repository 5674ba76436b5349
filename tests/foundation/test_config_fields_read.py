"""Every configuration field is read by some code path other than its own validation.

A switch that passes validation and then does nothing is the worst kind of defect: the user
believes a feature is on. This test walks the whole ``R1Config`` tree, collects every field, and
looks for a read of it in ``r1mega/`` outside ``validate`` methods (attribute loads such as
``cfg.rl.dynamic_sampling``, or the field's name as a string where code reads fields generically,
e.g. ``getattr(cfg, key)`` over a list of names). Fields that are legitimately consumed another
way are listed in ``CONSUMED_ELSEWHERE`` with the reason.
"""

from __future__ import annotations

import ast
import dataclasses
import typing
from pathlib import Path

import r1mega
from r1mega.config.schema import R1Config

ROOT = Path(r1mega.__file__).parent
VALIDATION = ("validate", "_validate", "__post_init__", "_check")

CONSUMED_ELSEWHERE = {
    "PipelineConfig.vars": "read by OmegaConf interpolation (${pipeline.vars.KEY}) in the step overrides",
    "PipelineConfig.required": "a validation rule by nature: names the vars a pipeline needs set",
}


def _config_classes(cls, seen=None) -> dict:
    seen = {} if seen is None else seen
    if cls in seen.values():
        return seen
    seen[cls.__name__] = cls
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        t = hints.get(f.name)
        for arg in (t, *typing.get_args(t)):
            if dataclasses.is_dataclass(arg):
                _config_classes(arg, seen)
    return seen


def _reads() -> set[str]:
    names: set[str] = set()
    for path in ROOT.rglob("*.py"):
        tree = ast.parse(path.read_text())
        skip: set[int] = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith(VALIDATION):
                skip.update(id(n) for n in ast.walk(node))
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):  # docstrings
                skip.add(id(node.value))
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
                names.add(node.attr)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.isidentifier():
                names.add(node.value)
    return names


def test_every_config_field_is_read_outside_validation():
    reads = _reads()
    unread = []
    for name, cls in sorted(_config_classes(R1Config).items()):
        for f in dataclasses.fields(cls):
            key = f"{name}.{f.name}"
            if f.name not in reads and key not in CONSUMED_ELSEWHERE:
                unread.append(key)
    assert not unread, f"config fields no code reads (wire them or remove them): {unread}"


def test_the_guard_sees_an_unread_field():
    # the detector itself: a field name that appears nowhere is reported
    reads = _reads()
    assert "dynamic_sampling_exhausted" in reads  # read by rl/sources.py
    assert "no_such_field_anywhere_42" not in reads
