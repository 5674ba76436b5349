"""Compose an ``r1mega-train`` configuration in-process, exactly as the command would.

Used before anything runs: by ``r1mega-launch`` (a job's configuration, before it waits in a
queue) and by the pipeline preflight (every step's configuration, before the first step).
"""

from __future__ import annotations

from contextlib import contextmanager


@contextmanager
def hydra_session():
    """Hydra's compose API: the running app's instance, or a temporary one over ``conf/``."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from r1mega.config.paths import conf_dir
    from r1mega.config.store import register

    if GlobalHydra.instance().is_initialized():
        yield
        return
    register()
    with initialize_config_dir(version_base="1.3", config_dir=str(conf_dir())):
        yield


def compose(overrides: list[str]):
    """The ``R1Config`` of these ``r1mega-train`` overrides (inside :func:`hydra_session`);
    Hydra's own exceptions for a bad override pass through."""
    from hydra import compose as hydra_compose

    from r1mega.config.schema import to_config

    return to_config(hydra_compose(config_name="config", overrides=list(overrides)))
