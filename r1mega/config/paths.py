"""Where the YAML config tree ``conf/`` lives (no Hydra import: the planner uses it too)."""

from __future__ import annotations

import importlib.resources
from pathlib import Path


def conf_dir() -> Path:
    """The ``conf/`` directory: beside the package in a source checkout, else the installed copy
    (the package ``r1mega.conf``, which ``pyproject.toml`` maps ``conf/`` to)."""
    source = Path(__file__).resolve().parents[2] / "conf"
    if (source / "config.yaml").is_file():
        return source
    installed = Path(str(importlib.resources.files("r1mega.conf")))
    if not (installed / "config.yaml").is_file():
        raise RuntimeError(f"r1mega's conf/ directory was not found (looked in {source} and {installed})")
    return installed
