"""The local executor: NeMo-Run starts torchrun with 2 processes on this machine (CPU, gloo).

Run in a subprocess: NeMo-Run fixes its home directory (NEMORUN_HOME) at import time, and the
tests keep it inside tmp_path.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
TRAIN = REPO / "r1mega" / "cli" / "train.py"


def _launch(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, NEMORUN_HOME=str(tmp_path / "nemo_home"), PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "r1mega.cli.launch", "cluster=local", f"cluster.job_dir={tmp_path / 'jobs'}", *argv],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )


FAKE_TRAIN = """#!{python}
import json, os, sys
args = dict(a.split("=", 1) for a in sys.argv[1:])
os.makedirs(args["hydra.run.dir"], exist_ok=True)
with open(os.path.join(args["hydra.run.dir"], f"rank{{os.environ['RANK']}}.json"), "w") as f:
    json.dump({{k: os.environ.get(k) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
               "NCCL_NVLS_ENABLE", "CUDA_DEVICE_MAX_CONNECTIONS", "EXTRA")}}, f)
if os.environ["RANK"] == "0":
    with open(os.path.join(args["hydra.run.dir"], "summary.json"), "w") as f:
        json.dump({{"lr": float(args["optim.lr"]), "world_size": int(os.environ["WORLD_SIZE"])}}, f)
"""


def test_local_sweep_runs_two_torchrun_processes_per_point(tmp_path):
    fake = tmp_path / "fake_train"
    fake.write_text(FAKE_TRAIN.format(python=sys.executable))
    fake.chmod(0o755)
    done = _launch(tmp_path, f"cluster.entrypoint={fake}", "cluster.env.EXTRA=yes", "stage=sft",
                   "model=deepseek_v3_tiny", "parallel.dp=2", "trainer.max_steps=2", "-m", "optim.lr=1e-3,3e-4")
    assert done.returncode == 0, done.stderr[-3000:]
    runs = tmp_path / "jobs" / "runs" / "sft-deepseek_v3_tiny"
    assert done.stdout.splitlines() == [f"sft-deepseek_v3_tiny-{i}: SUCCEEDED -> {runs / str(i)}" for i in (0, 1)]
    for i in (0, 1):
        ranks = [json.loads((runs / str(i) / f"rank{r}.json").read_text()) for r in (0, 1)]
        assert [(r["RANK"], r["WORLD_SIZE"], r["LOCAL_RANK"]) for r in ranks] == [("0", "2", "0"), ("1", "2", "1")]
        assert all(r["NCCL_NVLS_ENABLE"] == "0" and r["CUDA_DEVICE_MAX_CONNECTIONS"] == "1" and r["EXTRA"] == "yes" for r in ranks)
    manifest = json.loads((runs / "sweep.json").read_text())
    assert [p["swept"] for p in manifest["points"]] == [{"optim.lr": "0.001"}, {"optim.lr": "0.0003"}]
    table = subprocess.run([sys.executable, "-m", "r1mega.cli.launch", "summarize", str(runs)], cwd=REPO,
                           capture_output=True, text=True, timeout=60)
    assert table.stdout.splitlines()[2:] == ["| 0 | 0.001 | done | 0.001 | 2 |", "| 1 | 0.0003 | done | 0.0003 | 2 |"]


def _train_entrypoint() -> str:
    script = Path(sys.executable).parent / "r1mega-train"
    return str(script) if script.exists() else "python -m r1mega.cli.train"


@pytest.mark.slow
@pytest.mark.skipif(not TRAIN.exists(), reason="r1mega/cli/train.py (the SFT stage) has not landed yet")
def test_local_executor_runs_tiny_sft_with_two_processes(tmp_path):
    done = _launch(tmp_path, f"cluster.entrypoint={_train_entrypoint()}", "stage=sft", "model=deepseek_v3_tiny",
                   "parallel.dp=2", "trainer.max_steps=2")
    run = tmp_path / "jobs" / "runs" / "sft-deepseek_v3_tiny"
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == f"sft-deepseek_v3_tiny: SUCCEEDED -> {run}"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["stage"] == "sft" and summary["steps"] == 2
    assert summary["checkpoint"] == str(run / "checkpoints" / "iter_0000002")
    assert (run / "checkpoints" / "latest").read_text().strip() == "2"
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["parallel"]["dp"] == 2 and config["run_dir"] == str(run)
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2]
