"""Register the schema with Hydra's ConfigStore (the YAML lives in :func:`r1mega.config.paths.conf_dir`)."""

from __future__ import annotations

from hydra.core.config_store import ConfigStore

from r1mega.config.schema import R1Config

SCHEMA_NAME = "r1mega_schema"


def register() -> None:
    from r1mega.pipeline.select import register_resolvers

    ConfigStore.instance().store(name=SCHEMA_NAME, node=R1Config)
    register_resolvers()  # r1mega_run_dir, used by hydra.run.dir in conf/config.yaml

