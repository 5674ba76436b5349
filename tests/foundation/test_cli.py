"""The Hydra app as a user runs it: errors, run-dir contents, learning, kill-and-resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import proctree

SMALL = [
    "stage=sft", "model=deepseek_v3_tiny", "trainer.progress=false", "trainer.plots=true",
    "trainer.global_batch_size=16", "trainer.micro_batch_size=8", "data.synthetic.num_train=2000",
    "data.seq_length=128",
]


def train(args, run_dir=None, **kw):
    cmd = [sys.executable, "-m", "r1mega.cli.train", *args]
    if run_dir is not None:
        cmd.append(f"hydra.run.dir={run_dir}")
    env = {k: v for k, v in os.environ.items() if k not in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env = dict(env, PYTHONWARNINGS="ignore")
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, **kw)


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines() if l.strip()]


@pytest.mark.parametrize(
    "override,needle",
    [
        ("parallel.tp=3", "parallel.tp=3 does not divide model.num_attention_heads=4"),
        ("parallel.ep=3", "parallel.ep=3 does not divide model.num_experts=8"),
        ("optim.lr=-1", "optim.lr must be > 0"),
        ("parallel.tpp=2", "tpp"),
        ("model=not_a_model", "not_a_model"),
    ],
)
def test_invalid_override_is_one_clear_message(tmp_path, override, needle):
    out = train(["stage=sft", override], tmp_path / "run")
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.startswith("r1mega-train: error: ") and out.stderr.count("\n") == 1, out.stderr[-2000:]
    assert needle in out.stderr


@pytest.mark.parametrize("override,needle", [
    ("rollout.vllm_tp=2", "rollout.vllm_tp was renamed: use rollout.vllm.tp"),
    ("rollout.eval_k=4", "rollout.eval_k was renamed: use evaluation.k"),
    ("+rollout.record_dir=/tmp/x", "rollout.record_dir was renamed: use rl.record_dir"),
])
def test_renamed_key_names_its_new_place(tmp_path, override, needle):
    out = train(["stage=r1_zero", override], tmp_path / "run")
    assert out.returncode == 2 and out.stderr == f"r1mega-train: error: {needle}\n", out.stderr[-2000:]


def test_renamed_key_in_a_yaml_file_names_its_new_place(tmp_path):
    (tmp_path / "conf" / "rollout").mkdir(parents=True)
    (tmp_path / "conf" / "rollout" / "old.yaml").write_text("engine: megatron\nvllm_gpu_memory_utilization: 0.4\n")
    out = train(["stage=sft", "rollout=old", f"hydra.searchpath=[file://{tmp_path / 'conf'}]"], tmp_path / "run")
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr == ("r1mega-train: error: rollout.vllm_gpu_memory_utilization was renamed: "
                          "use rollout.vllm.gpu_memory_utilization\n")


def test_runtime_failure_keeps_its_traceback(tmp_path):
    """A failure of the run (not of its configuration) is a bug report: full traceback, exit code 1.
    Here a replayed rollout file that does not fit the run (recorded with another group size)."""
    replay = tmp_path / "replay"
    replay.mkdir()
    (replay / "step_000001.json").write_text(json.dumps(
        {"step": 1, "group_size": 3, "sample_ids": [0], "prompt_ids": [[1]], "responses": [], "rewards": [],
         "components": {}}))
    out = train(["stage=r1_zero", "model=deepseek_v3_tiny", f"rl.replay_dir={replay}", "trainer.max_steps=1",
                 "trainer.global_batch_size=8", "trainer.micro_batch_size=8", "rl.group_size=4",
                 "rollout.max_tokens=4", "evaluation.k=1", "data.synthetic.num_test=2", "trainer.progress=false",
                 "trainer.plots=false"], tmp_path / "run")
    assert out.returncode == 1, out.stderr[-2000:]
    assert "Traceback" in out.stderr and "recorded with group_size=3" in out.stderr
    assert "r1mega-train: error:" not in out.stderr


def test_missing_init_checkpoint_is_a_configuration_error(tmp_path):
    empty = tmp_path / "no_checkpoint"
    empty.mkdir()
    out = train(["stage=eval", f"trainer.init_from={empty}", "data.synthetic.num_test=2"], tmp_path / "run")
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.strip().splitlines()[-1] == (
        f"r1mega-train: error: trainer.init_from={str(empty)!r} holds no complete checkpoint")


def test_sft_learns_and_writes_run_dir(tmp_path):
    run = tmp_path / "run"
    out = train([*SMALL, "trainer.max_steps=40", "optim.lr=3e-3"], run)
    assert out.returncode == 0, out.stderr[-3000:]
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "sft_curves.png"):
        assert (run / name).is_file(), name
    rows = metrics(run)
    assert [r["step"] for r in rows] == list(range(1, 41))
    for key in ("step", "stage", "loss", "lr", "grad_norm", "tokens_per_s"):
        assert all(key in r for r in rows), key
    first = rows[0]["loss"]
    last = sum(r["loss"] for r in rows[-5:]) / 5
    # Uniform guessing over ~440 tokens is ln(440) ~ 6.1; 40 steps must cut that by > 40%.
    assert first > 5.0 and last < 0.6 * first, (first, last)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["final_loss"] == pytest.approx(rows[-1]["loss"])
    assert (run / "checkpoints" / "iter_0000040" / "r1mega.json").is_file()
    assert "max_steps: 40" in (run / "config.yaml").read_text()


def test_sft_with_mtp_trains_and_logs_the_mtp_loss(tmp_path):
    """``model.mtp_num_layers=1``: the SFT step adds the MTP loss (r1mega.models.mtp), logged
    per step as ``mtp_loss``. It starts near uniform guessing (ln(vocab=512) = 6.24, as the main
    loss does) and falls with training (observed 6.27 -> 5.36 in 6 steps at lr 3e-3)."""
    import math

    run = tmp_path / "run"
    out = train([*SMALL, "model.mtp_num_layers=1", "trainer.max_steps=8", "optim.lr=3e-3"], run)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = metrics(run)
    mtp = [r["mtp_loss"] for r in rows]
    assert len(mtp) == 8 and abs(mtp[0] - math.log(512)) < 0.5, mtp
    assert sum(mtp[-3:]) / 3 < 0.9 * mtp[0], mtp
    assert (run / "checkpoints" / "iter_0000008" / "r1mega.json").is_file()


def test_kill_and_resume_matches_uninterrupted_run(tmp_path):
    args = [*SMALL, "trainer.max_steps=10", "trainer.save_interval=2", "trainer.keep_checkpoints=10"]
    straight = tmp_path / "straight"
    assert train(args, straight).returncode == 0
    killed = tmp_path / "killed"
    cmd = [sys.executable, "-m", "r1mega.cli.train", *args, f"hydra.run.dir={killed}"]
    env, marker = proctree.tagged_env()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if (killed / "checkpoints" / "iter_0000004" / "r1mega.json").exists():
            helpers = proctree.descendants(proc.pid)
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    # It had saved checkpoints, so Megatron's checkpoint writer had started its helper
    # process; none of the run's processes may outlive it.
    assert helpers, "the run had no helper process to check"
    assert proctree.survivors(marker, helpers) == []
    resumed = train(args, killed)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = json.loads((killed / "summary.json").read_text())
    assert summary["resumed_from"] >= 4
    a, b = metrics(straight), metrics(killed)
    assert [r["step"] for r in b] == list(range(1, 11))  # no step twice, none missing
    # Two separate processes are not bit-identical on CPU: fp32 GEMM/sum kernels reduce in an
    # order that depends on buffer alignment, which differs between processes. Measured
    # process-to-process noise over 10 steps is <= 1e-7 relative. A real resume error (a wrong
    # batch, reset Adam moments, a wrong LR step) moves the next loss by > 1e-3 relative, so
    # 1e-5 separates the two by two orders of magnitude either way.
    for ra, rb in zip(a, b):
        assert rb["loss"] == pytest.approx(ra["loss"], rel=1e-5), ra["step"]
        assert rb["lr"] == ra["lr"], ra["step"]
        assert rb["epoch"] == ra["epoch"]


def test_multirun_gives_one_run_dir_per_point(tmp_path):
    out = train(["-m", *SMALL, "trainer.max_steps=2", "optim.lr=1e-3,3e-4", "trainer.plots=false",
                 f"hydra.sweep.dir={tmp_path / 'sweep'}"])
    assert out.returncode == 0, out.stderr[-3000:]
    runs = sorted(p for p in (tmp_path / "sweep").iterdir() if p.is_dir())
    assert [p.name.split("_")[0] for p in runs] == ["0", "1"]
    lrs = [metrics(p)[0]["lr"] for p in runs]
    # Warm-up starts at 0 and reaches lr/warmup_steps after one step: the two points differ by 1e-3/3e-4.
    assert lrs[0] / lrs[1] == pytest.approx(1e-3 / 3e-4)
    for p in runs:
        assert json.loads((p / "summary.json").read_text())["steps"] == 2
