"""Build typed dataclasses from plain dicts, with errors that name the offending field.

Configs arrive as plain data (JSON, YAML, ``OmegaConf.to_object`` output, or an OmegaConf
``DictConfig`` itself: any Mapping / Sequence is accepted). This module turns
such a mapping into a dataclass instance, checking each value against the field's annotation:
``bool``, ``int``, ``float`` (ints accepted), ``str``, ``X | None``, ``list[X]``, ``tuple[X, ...]``
(a list is accepted), ``dict[str, X]``, ``Any`` and nested dataclasses. Unknown keys and wrong
types raise ``ValueError("<path>: ...")`` where path looks like
``sources.math.components[0].options.timeout_s``. Range checks belong to each dataclass's
``__post_init__``; their ValueErrors are re-raised with the path prepended.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from typing import Any, Mapping, Sequence

from r1mega.config.errors import ConfigError


# A message that starts with a relative field path ("options: ...", "components[0].name: ...").
_RELATIVE_PATH = re.compile(r"^[A-Za-z_][\w\[\]]*(?:\.[A-Za-z_][\w\[\]]*)*:")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _plain(value: Any) -> Any:
    """Untyped values: turn other Mappings/Sequences (OmegaConf containers) into dict/list."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return [_plain(v) for v in value]
    return value


def _coerce(value: Any, tp: Any, path: str) -> Any:
    """Check ``value`` against annotation ``tp``; convert dicts to dataclasses, lists to tuples."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return _plain(value)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, path)
            except ValueError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{path}: unexpected value {value!r}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        return from_dict(tp, value, path)
    if origin in (list, tuple):
        if not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
            raise ConfigError(f"{path}: expected a list, got {type(value).__name__}")
        (item_tp, *_rest) = typing.get_args(tp) or (Any,)
        items = [_coerce(v, item_tp, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}: expected a mapping, got {type(value).__name__}")
        key_tp, val_tp = typing.get_args(tp) or (Any, Any)
        out = {}
        for k, v in value.items():
            if key_tp is str and not isinstance(k, str):
                raise ConfigError(f"{path}: keys must be strings, got {k!r}")
            out[k] = _coerce(v, val_tp, f"{path}.{k}")
        return out
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return value
    if tp in (bool, str):
        if not isinstance(value, tp):
            raise ConfigError(f"{path}: expected {_type_name(tp)}, got {value!r}")
        return value
    return value


def from_dict(cls: type, data: Any, path: str = "config") -> Any:
    """Instantiate dataclass ``cls`` from mapping ``data`` (see module docstring)."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{path}: unknown field '{unknown[0]}' (allowed: {', '.join(sorted(fields))})")
    kwargs = {name: _coerce(value, hints[name], f"{path}.{name}") for name, value in data.items()}
    try:
        return cls(**kwargs)
    except ValueError as exc:
        message = str(exc)
        joiner = "." if _RELATIVE_PATH.match(message) else ": "
        raise ConfigError(f"{path}{joiner}{message}") from None


def coerce_fields(obj: Any, path: str = "config") -> None:
    """Type-check an already constructed dataclass in place (used from ``__post_init__``).

    Lets ``RewardConfig(sources={"math": {...}})`` accept nested plain dicts, as produced by
    ``OmegaConf.to_object`` on an unstructured config.
    """
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        object.__setattr__(obj, f.name, _coerce(value, hints[f.name], f"{path}.{f.name}"))
