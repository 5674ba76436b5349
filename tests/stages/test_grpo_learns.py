"""GRPO moves a policy towards reward: the end-to-end sign and wiring check.

Loss and gradient tests (tests/rl) check each formula against float64; this one checks that
rollout -> reward -> advantage -> update, put together, climbs. A random-init deepseek_v3_tiny
samples 16-token completions; the reward is 1 when one contains the character 7 (a few of the
443 tokens), which the policy can learn by raising those tokens' logits. With a wrong sign,
mismatched advantages (rows shuffled against rewards) or a no-op update, the reward stays at its
start or falls; with the loop right it rises well above it in a few steps.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent


@pytest.mark.slow
def test_grpo_climbs_an_easy_reward(tmp_path):
    overrides = ["stage=r1_zero", "model=deepseek_v3_tiny", "trainer.progress=false", "trainer.plots=false",
                 "trainer.max_steps=12", "trainer.global_batch_size=64", "trainer.micro_batch_size=32",
                 "rl.group_size=8", "rollout.max_tokens=16", "evaluation.k=1", "data.synthetic.num_train=200",
                 "data.synthetic.num_test=4", "data.seq_length=64", "trainer.save_interval=0",
                 "optim.lr=3e-3", "optim.min_lr=0", "optim.warmup_steps=0", "optim.decay_style=constant"]
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    for k in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(k, None)
    out = subprocess.run([sys.executable, str(HERE / "grpo_easy_reward.py"), "seven", str(tmp_path / "run"), *overrides],
                         capture_output=True, text=True, env=env, timeout=900)
    assert out.returncode == 0, out.stderr[-4000:]
    line = next(l for l in out.stdout.splitlines() if l.startswith("REWARDS"))
    rewards = json.loads(line.split(" ", 1)[1])
    start, end = sum(rewards[:3]) / 3, sum(rewards[-3:]) / 3
    # Per step 64 Bernoulli samples: the standard error of a 3-step mean is <= 0.5/sqrt(192) ~ 0.036,
    # so a 0.2 rise is > 5 standard errors: noise does not pass it, and a broken loop does not make it.
    assert end >= start + 0.2, rewards
