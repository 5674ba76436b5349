"""The GRPO stage as a user runs it: one process and torchrun with EP=2 / TP=2 over gloo."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

TINY_RL = [
    "stage=r1_zero", "model=deepseek_v3_tiny", "trainer.progress=false", "trainer.plots=false",
    "trainer.global_batch_size=16", "trainer.micro_batch_size=8", "rl.group_size=4",
    "rollout.max_tokens=24", "evaluation.k=2", "data.synthetic.num_train=200",
    "data.synthetic.num_test=8", "data.seq_length=160", "trainer.save_interval=0",
]


def run_train(args, run_dir, nproc=1):
    env = {k: v for k, v in os.environ.items() if k not in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env = dict(env, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    if nproc == 1:
        cmd = [sys.executable, "-m", "r1mega.cli.train"]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
               "--master-port", str(_free_port()), "-m", "r1mega.cli.train"]
    out = subprocess.run([*cmd, *args, f"hydra.run.dir={run_dir}"], capture_output=True, text=True,
                         env=env, timeout=900)
    assert out.returncode == 0, out.stderr[-4000:]
    rows = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return rows, json.loads((run_dir / "summary.json").read_text())


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_separate_old_policy_forward_and_mismatch_metrics(tmp_path):
    # With the rollout/trainer mismatch correction on, old log-probs come from their own
    # forward pass (forward-only schedule) instead of logp.detach(). Same weights, same inputs,
    # same kernels: the ratio must still be exactly 1 and the reference KL exactly 0.
    args = [*TINY_RL, "trainer.max_steps=2", "rl.rollout_is_correction=tis", "rl.kl_beta=0.01"]
    rows, summary = run_train(args, tmp_path / "r")
    first = rows[0]
    assert first["actor_ratio_max"] == 1.0 and first["kl_ref"] == 0.0
    # The built-in engine decodes with a KV cache; the trainer recomputes full sequences in
    # fp32. Per-token log-probs agree to ~1e-5, so the truncated-IS ratio stays within 1e-3 of 1.
    assert abs(first["mismatch_ratio_max"] - 1.0) < 1e-3
    assert first["mismatch_corrected_frac"] == 0.0
    for key in ("reward_mean", "reward_std", "accuracy", "format_rate", "response_length_mean",
                "response_length_max", "clip_fraction", "kl_ref", "entropy", "grad_norm",
                "rollout_tokens_per_s", "train_tokens_per_s", "time_rollout", "time_train"):
        assert key in first, key
    assert first["entropy"] > 0
    assert "eval_before" in summary and "eval_after" in summary
    assert 0.0 <= summary["eval_after"]["pass@1"] <= 1.0


def test_single_update_is_exactly_on_policy(tmp_path):
    rows, _ = run_train([*TINY_RL, "trainer.max_steps=1", "rl.kl_beta=0.01"], tmp_path / "r")
    assert rows[0]["actor_ratio_mean"] == 1.0 and rows[0]["actor_ratio_max"] == 1.0
    assert rows[0]["kl_ref"] == 0.0
    assert rows[0]["clip_fraction"] == 0.0


@pytest.mark.parametrize("layout", [["parallel.ep=2"], ["model=tiny_dense", "parallel.tp=2", "parallel.sequence_parallel=false"]],
                         ids=["moe-ep2", "dense-tp2"])
def test_grpo_runs_with_model_parallelism_over_gloo(tmp_path, layout):
    rows, summary = run_train([*TINY_RL, "trainer.max_steps=2", *layout], tmp_path / "r", nproc=2)
    assert [r["step"] for r in rows] == [1, 2]
    assert rows[0]["actor_ratio_max"] == 1.0
    assert summary["eval_after"]["n_questions"] == 8  # every question answered once across ranks


def test_built_in_engine_rejects_virtual_pipeline_stages(tmp_path):
    # Pipeline parallelism and sequence parallelism decode (tests/parallel/test_engine_layouts.py);
    # interleaved virtual stages do not, and the layout check says so before any process starts.
    env = {k: v for k, v in os.environ.items() if k not in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE")}
    out = subprocess.run([sys.executable, "-m", "r1mega.cli.train", *TINY_RL, "parallel.pp=2", "parallel.vpp=2",
                          f"hydra.run.dir={tmp_path}"], capture_output=True, text=True, env=dict(env, WORLD_SIZE="2"))
    assert out.returncode == 2
    assert "rollout.engine=megatron does not decode with virtual pipeline stages (parallel.vpp=2)" in out.stderr


@pytest.mark.parametrize("nproc,layout", [(1, []), (2, ["parallel.pp=2"])], ids=["one-rank", "pp2"])
def test_grpo_with_an_mtp_model_uses_the_main_head(tmp_path, nproc, layout):
    """A model with a multi-token-prediction layer (on the last pipeline stage): decoding, the
    old/reference log-prob forwards and the GRPO forward all run without labels, so all use the
    main head only (r1mega.models.mtp) and stay consistent with one another: ratio exactly 1,
    reference KL exactly 0 on the first step, and the engine's log-probs (KV-cache decode; at
    PP=2 through the pipeline schedule) vs the trainer's full forward within 1e-3. The mismatch
    metric comes from the last stage, the only one with trainer log-probs (it read ~900 from
    the first stage's zeros before)."""
    args = [*TINY_RL, "model.mtp_num_layers=1", "trainer.max_steps=1", "rl.rollout_is_correction=tis",
            "rl.kl_beta=0.01", *layout]
    rows, _ = run_train(args, tmp_path / "r", nproc=nproc)
    first = rows[0]
    assert first["actor_ratio_max"] == 1.0 and first["kl_ref"] == 0.0 and first["entropy"] > 0
    assert abs(first["mismatch_ratio_max"] - 1.0) < 1e-3
