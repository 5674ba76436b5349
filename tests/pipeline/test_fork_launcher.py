"""pipeline.launcher=fork: ranks forked from the orchestrator behave like torchrun's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from r1mega.pipeline import forked
from tests.pipeline.test_pipeline_resume import REPO, env


def _smoke(run_dir, launcher: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "r1mega.cli.train", "pipeline=smoke", "pipeline.stop_after=cold_start",
           "pipeline.nproc=2", f"pipeline.launcher={launcher}", "trainer.progress=false",
           "trainer.micro_batch_size=4", f"hydra.run.dir={run_dir}"]
    return subprocess.run(cmd, cwd=REPO, env=env(), capture_output=True, text=True, timeout=900)


def test_forked_ranks_train_exactly_like_torchrun_ranks(tmp_path):
    """The same 2-rank SFT step, started by torchrun and by fork: same losses to the last bit
    (CPU arithmetic is deterministic), and the forked step really ran as 2 ranks."""
    runs = {}
    for launcher in ("exec", "fork"):
        out = _smoke(tmp_path / launcher, launcher)
        assert out.returncode == 0, out.stderr[-4000:]
        runs[launcher] = [json.loads(line) for line in (tmp_path / launcher / "cold_start" / "metrics.jsonl").open()]
    assert "fork 2 x r1mega-train" in out.stdout
    assert [m["loss"] for m in runs["fork"]] == [m["loss"] for m in runs["exec"]]
    assert len(runs["fork"]) == 4


def _child(action: str) -> int:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        if action == "sleep":
            time.sleep(60)
        os._exit(3)
    return pid


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_the_first_failing_rank_stops_the_others():
    sleeper, failer = _child("sleep"), _child("fail")
    t = time.monotonic()
    assert forked._wait([sleeper, failer]) == 3
    assert time.monotonic() - t < 10  # the sleeper was killed, not waited for
    with pytest.raises(ChildProcessError):
        os.waitpid(sleeper, os.WNOHANG)  # already reaped


_RANK_WITH_A_HELPER = """
import multiprocessing, os, sys
from r1mega.pipeline import forked
read_end, write_end = os.pipe()
rank = os.fork()
if rank == 0:
    try:
        os.close(read_end)
        os.dup2(write_end, 1)  # the helper inherits this stdout, as a rank's helpers do
        queue = multiprocessing.get_context("spawn").Manager().Queue()  # as Megatron's writer keeps one
    finally:
        forked._exit(0)
os.close(write_end)
with os.fdopen(read_end, "rb") as pipe:
    pipe.read()  # returns at EOF: once nothing holds the write end
print("EOF", forked._wait([rank]))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_rank_stops_its_multiprocessing_helpers_when_it_exits():
    """Megatron's checkpoint writer leaves a multiprocessing manager server behind; it inherits
    the rank's stdout, and while it lives a caller reading that pipe never sees EOF. (Run in a
    fresh interpreter: a spawn context inside pytest's own process does not start the same way.)"""
    out = subprocess.run([sys.executable, "-c", _RANK_WITH_A_HELPER], cwd=REPO, env=env(),
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["EOF", "0"], out.stderr[-2000:]


def test_launcher_is_validated():
    from r1mega.pipeline.config import PipelineConfig, StepConfig

    with pytest.raises(ValueError, match="pipeline.launcher='spawn' is not one of exec, fork"):
        PipelineConfig(name="x", steps=[StepConfig(name="a", overrides=["stage=sft"])], launcher="spawn").validate()
