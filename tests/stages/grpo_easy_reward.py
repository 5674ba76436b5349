"""Run GRPO (the real stage: Megatron model, built-in engine, optimizer) with a test reward.

``python grpo_easy_reward.py REWARD RUN_DIR OVERRIDE...`` with REWARD one of

* ``seven``: a reward any policy can learn quickly, 1 when the completion contains the digit 7,
  else 0 (test_grpo_learns.py; the arithmetic task is too slow to learn in a unit test's budget);
* ``hash``: 1 for about a third of completions, decided by a CRC of the text, so a random
  policy's groups are a mix of constant and informative ones (the dynamic-sampling tests).

Prints the JSON list of per-step mean rewards."""

import json
import sys
import zlib

from hydra import compose, initialize_config_dir

from r1mega.config.schema import to_config
from r1mega.config.paths import conf_dir
from r1mega.config.store import register
from r1mega.rewards.core.types import RewardResult


class ContainsSeven:
    def score_batch(self, items):
        return [RewardResult(float("7" in it["completion"]), {"accuracy": float("7" in it["completion"])})
                for it in items]

    def close(self):
        pass


class TextHash:
    def score_batch(self, items):
        hit = [float(zlib.crc32(it["completion"].encode()) % 3 == 0) for it in items]
        return [RewardResult(h, {"accuracy": h}) for h in hit]

    def close(self):
        pass


REWARDS = {"seven": ContainsSeven, "hash": TextHash}


def main(reward: str, run_dir: str, overrides: list[str]) -> None:
    register()
    with initialize_config_dir(version_base="1.3", config_dir=str(conf_dir())):
        cfg = to_config(compose("config", overrides=[*overrides, f"hydra.run.dir={run_dir}"]))
    cfg.run_dir = run_dir
    from r1mega.stages import grpo

    grpo.run(cfg, cfg.validate(1), make_rewarder=lambda c: REWARDS[reward]())
    rows = [json.loads(line) for line in open(f"{run_dir}/metrics.jsonl")]
    print("REWARDS", json.dumps([r["reward_mean"] for r in rows]))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
