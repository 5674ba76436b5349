"""Run GRPO (the real stage: Megatron model, built-in engine, optimizer) with a reward any policy
can learn quickly: 1 when the completion contains the digit 7, else 0. Prints the JSON list of
per-step mean rewards. Used by test_grpo_learns.py; the arithmetic task is too slow to learn in
a unit test's budget."""

import json
import sys

from hydra import compose, initialize_config_dir

from r1mega.config.schema import to_config
from r1mega.config.paths import conf_dir
from r1mega.config.store import register
from r1mega.rewards.types import RewardResult


class ContainsSeven:
    def score_batch(self, items):
        return [RewardResult(float("7" in it["completion"]), {"accuracy": float("7" in it["completion"])})
                for it in items]

    def close(self):
        pass


def main(run_dir: str, overrides: list[str]) -> None:
    register()
    with initialize_config_dir(version_base="1.3", config_dir=str(conf_dir())):
        cfg = to_config(compose("config", overrides=[*overrides, f"hydra.run.dir={run_dir}"]))
    cfg.run_dir = run_dir
    from r1mega.stages import grpo

    grpo.run(cfg, cfg.validate(1), make_rewarder=lambda c: ContainsSeven())
    rows = [json.loads(line) for line in open(f"{run_dir}/metrics.jsonl")]
    print("REWARDS", json.dumps([r["reward_mean"] for r in rows]))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
