"""Where the YAML config tree lives and how a ``model=`` choice becomes a ``ModelConfig``.

In a source checkout the tree is ``<repo>/conf``; in an installed wheel it is the package
``r1mega.conf`` (``pyproject.toml`` maps ``conf/`` there). ``model=`` takes either a name from
``conf/model/`` (``deepseek_v3``) or a path to a YAML file with the same keys.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping

import yaml

from r1mega.config.errors import ConfigError
from r1mega.config.paths import conf_dir
from r1mega.models.config import ModelConfig


def group_file(group: str, choice: str) -> Path:
    """The YAML file of ``group=choice``: a path as given, or ``conf/<group>/<choice>.yaml``."""
    if choice.endswith((".yaml", ".yml")) or "/" in choice:
        path = Path(choice).expanduser()
    else:
        path = conf_dir() / group / f"{choice}.yaml"
    if not path.is_file():
        options = sorted(p.stem for p in (conf_dir() / group).glob("*.yaml"))
        raise ConfigError(f"{group}={choice!r}: no such file {path} (choices: {', '.join(options)})")
    return path


def load_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of keys, got {type(data).__name__}")
    return data


def load_model(choice: str, overrides: Mapping[str, Any] | None = None) -> ModelConfig:
    """``ModelConfig`` from ``conf/model/<choice>.yaml`` (or a path) plus ``model.*`` overrides."""
    values = load_yaml(group_file("model", choice))
    values.update(overrides or {})
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown model key(s): {', '.join('model.' + k for k in unknown)}")
    model = ModelConfig(**values)
    model.validate()
    return model
