"""``r1mega-train``: the Hydra app that runs any stage of the recipe.

    r1mega-train                                # the tiny R1 pipeline (conf/pipeline/tiny_r1.yaml)
    r1mega-train stage=sft model=deepseek_v3_tiny trainer.max_steps=200
    r1mega-train -m stage=sft optim.lr=1e-3,3e-4  # a sweep, one run dir per point
    torchrun --nproc-per-node 8 -m r1mega.cli.train parallel.tp=2 ...

Configuration errors -- a :class:`~r1mega.config.errors.ConfigError` from validation, or Hydra
failing to compose (unknown key, bad override, missing group option) -- are reported as one
line naming the key, with exit code 2. Anything else is a failure of the run: its full
traceback is printed and the exit code is 1.
"""

from __future__ import annotations

import os
import sys
from typing import Optional

import hydra
from omegaconf import DictConfig

from r1mega.config.errors import ConfigError
from r1mega.config.paths import conf_dir
from r1mega.config.store import register

register()


def _run(cfg: DictConfig) -> dict:
    from hydra.core.hydra_config import HydraConfig

    from r1mega.config.schema import to_config
    from r1mega.stages import get_stage

    config = to_config(cfg)
    config.run_dir = config.run_dir or HydraConfig.get().runtime.output_dir
    from r1mega.pipeline.select import runs_pipeline

    if runs_pipeline(config.pipeline.name, HydraConfig.get().overrides.task):
        from r1mega.pipeline.runner import run_pipeline

        return run_pipeline(config, list(HydraConfig.get().overrides.task))
    dims = config.validate(int(os.environ.get("WORLD_SIZE", 1)))
    return get_stage(config.stage.name)(config, dims)


def _fail(message: str) -> None:
    print(f"r1mega-train: error: {message}", file=sys.stderr)
    sys.exit(2)


@hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="config")
def _main(cfg: DictConfig) -> None:
    try:
        _run(cfg)
    except ConfigError as e:  # here, before Hydra adds its "Error executing job" line
        _fail(" ".join(str(e).split()))


def user_error(exc: BaseException) -> Optional[str]:
    """The one-line message of a configuration error, or None for any other exception."""
    from hydra.errors import HydraException

    from r1mega.config.renamed import explain

    if isinstance(exc, HydraException):  # composition: unknown key, bad override, missing option
        renamed = explain(exc)
        if renamed is not None:
            return str(renamed)
        parts = [str(exc).split("Config search path:")[0]]
        if exc.__cause__ is not None and str(exc.__cause__) not in parts[0]:
            parts.append(str(exc.__cause__))
        return " ".join(" ".join(parts).split())
    if isinstance(exc, ConfigError):
        return " ".join(str(exc).split())
    return None


def main() -> None:
    from r1mega.config.renamed import check_overrides

    os.environ.setdefault("NCCL_NVLS_ENABLE", "0")
    if "TORCHELASTIC_RUN_ID" in os.environ:
        from r1mega import lifeline

        lifeline.arm_to_parent()  # a rank under torchrun dies with its agent, SIGKILL included
    # Hydra's own handler would print every exception the same way (exit code 1); let them
    # through to tell configuration errors (one line, exit code 2) from failures (traceback, 1).
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        check_overrides(sys.argv[1:])
        _main()
    except Exception as e:
        message = user_error(e)
        if message is None:
            raise
        _fail(message)


if __name__ == "__main__":
    main()
