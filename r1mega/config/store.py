"""Register the schema with Hydra's ConfigStore and locate the YAML in ``conf/``."""

from __future__ import annotations

from pathlib import Path

from hydra.core.config_store import ConfigStore

from r1mega.config.schema import R1Config

SCHEMA_NAME = "r1mega_schema"


def register() -> None:
    from r1mega.pipeline.select import register_resolvers

    ConfigStore.instance().store(name=SCHEMA_NAME, node=R1Config)
    register_resolvers()  # r1mega_run_dir, used by hydra.run.dir in conf/config.yaml


def conf_dir() -> Path:
    """The ``conf/`` directory: beside the package in a source checkout, else the installed copy."""
    source = Path(__file__).resolve().parents[2] / "conf"
    if (source / "config.yaml").is_file():
        return source
    import importlib.resources

    installed = Path(str(importlib.resources.files("r1mega.conf")))
    if not (installed / "config.yaml").is_file():
        raise RuntimeError(f"r1mega's conf/ directory was not found (looked in {source} and {installed})")
    return installed
