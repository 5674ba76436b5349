"""The requeue trap of launch/requeue.sh, run by bash against stub srun and scontrol."""

import os
import signal
import subprocess
import time
from pathlib import Path

from conftest import HERE

SNIPPET = HERE.parents[1] / "launch" / "requeue.sh"


def _stub(path: Path, body: str) -> None:
    path.write_text("#!/bin/bash\n" + body)
    path.chmod(0o755)


def test_usr1_requeues_at_once_while_the_step_runs(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls"
    # the "training step": runs for a minute unless killed
    _stub(bin_dir / "srun", f'echo $$ > {tmp_path}/step.pid\necho "srun $*" >> {log}\nexec sleep 60\n')
    # "Slurm": record the request and end the step, as a real requeue does
    _stub(bin_dir / "scontrol", f'echo "scontrol $*" >> {log}\nkill "$(cat {tmp_path}/step.pid)"\n')
    script = tmp_path / "job.sh"
    script.write_text(f"source {SNIPPET}\nsrun torchrun --nnodes=2\necho \"step exit $?\"\n")
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", SLURM_JOB_ID="4242")
    proc = subprocess.Popen(["bash", str(script)], env=env, stdout=subprocess.PIPE, text=True)
    deadline = time.time() + 10
    while not (tmp_path / "step.pid").exists() and time.time() < deadline:
        time.sleep(0.05)
    start = time.time()
    proc.send_signal(signal.SIGUSR1)
    out, _ = proc.communicate(timeout=20)
    assert time.time() - start < 5  # the trap ran while the step was still running
    assert log.read_text().splitlines() == ["srun torchrun --nnodes=2", "scontrol requeue 4242"]
    assert "r1mega: USR1 at" in out and "requeueing job 4242 (restart 0)" in out
    assert out.rstrip().endswith(f"step exit {128 + signal.SIGTERM}")


def test_wrapper_keeps_the_step_exit_code(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _stub(bin_dir / "srun", "exit 7\n")
    script = tmp_path / "job.sh"
    script.write_text(f"source {SNIPPET}\nsrun x\necho \"rc=$?\"\n")
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", SLURM_JOB_ID="1")
    out = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=20).stdout
    assert out.strip() == "rc=7"
