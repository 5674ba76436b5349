"""``r1mega-train``: the Hydra app that runs any stage of the recipe.

    r1mega-train                                # the tiny R1 pipeline (conf/pipeline/tiny_r1.yaml)
    r1mega-train stage=sft model=deepseek_v3_tiny trainer.max_steps=200
    r1mega-train -m stage=sft optim.lr=1e-3,3e-4  # a sweep, one run dir per point
    torchrun --nproc-per-node 8 -m r1mega.cli.train parallel.tp=2 ...

Configuration errors are reported as one line naming the key, with exit code 2.
"""

from __future__ import annotations

import os
import sys

import hydra
from omegaconf import DictConfig

from r1mega.config.store import conf_dir, register

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


@hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="config")
def _main(cfg: DictConfig) -> None:
    try:
        _run(cfg)
    except ValueError as e:
        print(f"r1mega-train: error: {e}", file=sys.stderr)
        sys.exit(2)


def main() -> None:
    os.environ.setdefault("NCCL_NVLS_ENABLE", "0")
    if "TORCHELASTIC_RUN_ID" in os.environ:
        from r1mega import lifeline

        lifeline.arm_to_parent()  # a rank under torchrun dies with its agent, SIGKILL included
    _main()


if __name__ == "__main__":
    main()
