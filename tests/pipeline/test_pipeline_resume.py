"""A pipeline killed mid-stage and rerun with the same command finishes without redoing stages."""

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

REPO = Path(__file__).resolve().parents[2]


def pipeline_cmd(run_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "r1mega.cli.train", "pipeline=smoke", "trainer.progress=false",
            "pipeline.vars.sft_steps=10", *extra, f"hydra.run.dir={run_dir}"]


def user_sft_data(path: Path) -> Path:
    """Two non-reasoning SFT records, as a user brings them (prompt/response and messages)."""
    rows = [{"prompt": "Say hello in French.", "response": "<think>greeting</think> Bonjour."},
            {"messages": [{"role": "user", "content": "Name a colour."},
                          {"role": "assistant", "content": "<think>any</think> Blue."}]}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def env() -> dict:
    return dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")


@pytest.mark.parametrize("launcher", ["exec", "fork"])
def test_kill_mid_stage_then_rerun_skips_finished_stages(tmp_path, launcher):
    run = tmp_path / "pipe"
    # The user's non-reasoning data make up a third of the SFT round's data.
    mix = [f"pipeline.extra_sft_files=[{user_sft_data(tmp_path / 'general.jsonl')}]", "pipeline.extra_sft_ratio=0.3333",
           f"pipeline.launcher={launcher}"]
    tagged, tag = proctree.tagged_env(env())
    proc = subprocess.Popen(pipeline_cmd(run, *mix), cwd=REPO, env=tagged, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    marker = run / "sft" / "checkpoints" / "iter_0000002" / "r1mega.json"
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None and not marker.exists():
        time.sleep(0.05)
    assert proc.poll() is None, "the pipeline ended before the sft step saved a checkpoint"
    helpers = proctree.descendants(proc.pid)
    # Only the orchestrator, as the OOM killer would: killing the process group (as Ctrl-C or
    # a scheduler does) would hide a step, rank or checkpoint-writer helper that does not die
    # with its parent. None of the pipeline's processes may outlive it.
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert helpers, "the pipeline had no step process to check"
    assert proctree.survivors(tag, helpers) == []
    finished = ["cold_start", "rejection_sampling", "sft_data"]
    assert all((run / s / "DONE.json").is_file() for s in finished)
    assert not (run / "sft" / "DONE.json").exists()
    before = {s: (run / s / "DONE.json").stat().st_mtime_ns for s in finished}
    data_mtime = (run / "rejection_sampling" / "data.jsonl").stat().st_mtime_ns

    out = subprocess.run(pipeline_cmd(run, *mix), cwd=REPO, env=env(), capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-4000:]
    for s in finished:
        assert f"{s}: done earlier, skipped" in out.stdout
        assert (run / s / "DONE.json").stat().st_mtime_ns == before[s]
    assert (run / "rejection_sampling" / "data.jsonl").stat().st_mtime_ns == data_mtime
    manifest = json.loads((run / "sft_data" / "manifest.json").read_text())
    rs_records = len((run / "rejection_sampling" / "data.jsonl").read_text().splitlines())
    # smoke keeps every one of 4 prompts x 2 samples (no correctness required) unless two are identical
    assert manifest["reasoning"] == rs_records and 2 <= rs_records <= 8
    assert manifest["extra"] == round(rs_records * 0.3333 / (1 - 0.3333)) and manifest["extra_available"] == 2
    mixed = (run / "sft_data" / "data.jsonl").read_text().splitlines()
    assert len(mixed) == manifest["records"] == rs_records + manifest["extra"]
    assert sum("Bonjour" in l or "Name a colour" in l for l in mixed) == manifest["extra"]
    sft = json.loads((run / "sft" / "summary.json").read_text())
    assert sft["resumed_from"] >= 2 and sft["steps"] == 10
    steps = [json.loads(l)["step"] for l in (run / "sft" / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 11))  # no step twice, none missing
    summary = json.loads((run / "summary.json").read_text())
    assert {k: v["status"] for k, v in summary["steps"].items()} == {
        "cold_start": "skipped", "rejection_sampling": "skipped", "sft_data": "skipped", "sft": "ran", "eval": "ran"}
    ev = summary["eval"]["sft"]
    assert ev["n_questions"] == 4 and 0.0 <= ev["pass@1"] <= 1.0 and "cons@2" in ev and "greedy" in ev
    assert (run / "pipeline_curves.png").is_file() and "| sft |" in (run / "results.md").read_text()


@pytest.mark.slow
def test_default_command_runs_the_whole_tiny_r1_pipeline(tmp_path):
    """`r1mega-train` with no arguments, shrunk through pipeline.vars so it takes minutes."""
    small = ["pipeline.vars.train_prompts=400", "pipeline.vars.cold_start_examples=200",
             "pipeline.vars.r1_zero_steps=1", "pipeline.vars.cold_start_steps=4", "pipeline.vars.reasoning_rl_steps=1",
             "pipeline.vars.rs_prompts=4", "pipeline.vars.sft_steps=2", "pipeline.vars.all_scenario_steps=1",
             "pipeline.vars.distill_prompts=4", "pipeline.vars.student_steps=2", "pipeline.vars.rl_batch=16",
             "pipeline.vars.rl_micro=8",
             "pipeline.vars.rl_group=4", "rollout.max_tokens=16", "evaluation.k=2", "data.synthetic.num_test=4",
             "curation.require_correct=false", "curation.filters.format_mode=none",
             "curation.filters.drop_truncated=false", "trainer.progress=false", "trainer.plots=false"]
    run = tmp_path / "tiny"
    out = subprocess.run([sys.executable, "-m", "r1mega.cli.train", *small, f"hydra.run.dir={run}"], cwd=REPO,
                         env=env(), capture_output=True, text=True, timeout=3600)
    assert out.returncode == 0, out.stderr[-4000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["pipeline"] == "tiny_r1" and summary["complete"] is True
    models = ["base", "r1_zero", "cold_start", "reasoning_rl", "sft", "final", "student", "student_cold_start_only"]
    assert list(summary["eval"]) == models
    for m in models:
        assert set(summary["eval"][m]) >= {"pass@1", "cons@2", "greedy"}, m
    assert "name: tiny_dense" in (run / "student" / "config.yaml").read_text()
    assert (run / "all_scenario_rl" / "reward_model" / "config.json").is_file()
    assert (run / "pipeline_curves.png").is_file()
