"""The tiny Qwen3 / Qwen3-MoE model configs train on CPU, and what they train converts.

``r1mega-train stage=sft`` (the real Hydra app, in a fresh interpreter) on the synthetic data
for 20 steps: the loss starts near uniform guessing (ln 512 = 6.24) and must fall below 0.7x
of it (observed for qwen3_moe_tiny at lr 3e-3: 6.25 -> 2.3 by step 20). The trained
checkpoint is then exported to HF and compared with transformers' own Qwen3 / Qwen3-MoE
forward: the tolerance of test_roundtrip (1e-4; observed 2.3e-6 after 30 steps), top-1
agreement 1.0 -- so the export is the trained model, not the initial one (trained and initial
weights differ in O(1) logits).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from r1mega.convert import export_hf, verify

ARGS = ["stage=sft", "trainer.progress=false", "trainer.global_batch_size=16", "trainer.micro_batch_size=8",
        "data.synthetic.num_train=2000", "data.seq_length=128", "trainer.max_steps=20", "optim.lr=3e-3"]


def train(args: list, run_dir) -> subprocess.CompletedProcess:
    """``r1mega-train`` in a fresh interpreter, without this process's one-rank rendezvous."""
    drop = {"MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK"}
    env = {k: v for k, v in os.environ.items() if k not in drop} | {"PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "r1mega.cli.train", *args, f"hydra.run.dir={run_dir}"],
                          capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.parametrize("model", ["qwen3_tiny", "qwen3_moe_tiny"])
def test_tiny_qwen3_trains_and_exports_what_it_trained(model, tmp_path):
    run = tmp_path / "run"
    out = train([*ARGS, f"model={model}"], run)
    assert out.returncode == 0, out.stderr[-3000:]
    loss = [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    assert len(loss) == 20 and abs(loss[0] - math.log(512)) < 0.5, loss
    assert sum(loss[-3:]) / 3 < 0.7 * loss[0], loss
    hf = export_hf(run / "checkpoints", tmp_path / "hf")
    family = json.loads((hf / "config.json").read_text())["model_type"]
    assert family == ("qwen3_moe" if "moe" in model else "qwen3")
    result = verify(hf, run / "checkpoints", batch=2, seq_len=32)
    assert result["max_abs_diff"] <= 1e-4 and result["top1_agreement"] == 1.0, result
