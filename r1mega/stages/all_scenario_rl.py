"""Stage ``all_scenario_rl``: R1's step 2d -- GRPO over reasoning *and* general prompts.

    r1mega-train stage=all_scenario_rl trainer.init_from=SFT_CKPT \
        all_scenario.reward_model.path=/models/my_rm all_scenario.general_files=[general.jsonl]

The loop is ``r1mega.stages.grpo`` unchanged; only two inputs differ:

* **prompts**: the reasoning train split plus general prompts (``all_scenario.general_files``,
  or a small bundled set), making up ``all_scenario.general_fraction`` of the mix;
* **rewards**: a :class:`~r1mega.rm.router.RewardRouter` sends each response by its
  ``data_source`` (``all_scenario.routing``) to the rule rewards or to a preference reward
  model that judges the final summary only (text after ``</think>``), as R1 does for
  helpfulness.

Without ``all_scenario.reward_model.path`` a tiny *random* classifier is built in
``<run dir>/reward_model`` on first use: the stage runs end to end on a CPU, but the general
prompts' rewards are meaningless. Held-out evaluation stays on the reasoning test split.
"""

from __future__ import annotations

from pathlib import Path

import torch.distributed as dist

from r1mega.config.schema import R1Config
from r1mega.data import general_prompts
from r1mega.data.loaders import load_split
from r1mega.parallel.dims import ParallelDims
from r1mega.stages import grpo


def reward_model_dir(cfg: R1Config) -> Path:
    """The configured reward model, or the tiny random one (built by rank 0 on first use)."""
    if cfg.all_scenario.reward_model.path:
        return Path(cfg.all_scenario.reward_model.path).expanduser()
    path = Path(cfg.run_dir) / "reward_model"
    if (not dist.is_initialized() or dist.get_rank() == 0) and not (path / "config.json").is_file():
        from r1mega.data.tokenizer import load_tokenizer
        from r1mega.rm.tiny import build_random_reward_model

        build_random_reward_model(path, load_tokenizer(cfg.data.tokenizer), seed=cfg.trainer.seed)
    if dist.is_initialized():
        dist.barrier()
    return path


def make_router(cfg: R1Config):
    from r1mega.rewards import RewardManager
    from r1mega.rm.router import RewardRouter
    from r1mega.rm.scorer import RewardModelScorer

    scorer = RewardModelScorer(reward_model_dir(cfg), cfg.all_scenario.reward_model)
    return RewardRouter(RewardManager(cfg.reward), scorer, cfg.all_scenario)


def training_prompts(cfg: R1Config) -> list[dict]:
    a = cfg.all_scenario
    reasoning, _ = load_split(cfg.data, "train", need_response=False)
    if a.general_files:
        general = general_prompts.from_files(a.general_files, a.general_source)
    else:
        general = general_prompts.bundled(a.general_prompts, a.general_source)
    return general_prompts.mix(reasoning, general, a.general_fraction)


def run(cfg: R1Config, dims: ParallelDims) -> dict:
    return grpo.run(cfg, dims, make_rewarder=make_router, train_records=training_prompts(cfg))
