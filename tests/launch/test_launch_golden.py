"""--dryrun prints exactly what would be submitted; compared with golden files.

Regenerate after an intended change with ``R1MEGA_UPDATE_GOLDEN=1 pytest tests/launch`` and
review the diff: every line of these scripts ends up on a cluster.
"""

import os
import re

import pytest

from conftest import CLUSTERS, GOLDEN, HERE

DSV3_GRPO = [
    "stage=r1_zero", "model=deepseek_v3", "parallel.tp=1", "parallel.pp=16", "parallel.ep=2",
    "plan.first_stage_layers=3", "plan.last_stage_layers=2", "plan.recompute=full",
    "plan.seq_length=1536", "plan.rollout=sleep",
]
SWEEP = ["stage=sft", "model=qwen2_5_7b", "parallel.tp=4", "trainer.max_steps=200", "-m", "optim.lr=1e-5,3e-5"]

CASES = {
    # DeepSeek-V3 does not fit on 4 x 8 H100 (see test_launch_preflight), hence --skip-plan
    "dsv3_grpo_4node_nemo": [f"cluster={CLUSTERS}/h100_pyxis.yaml", *DSV3_GRPO, "--skip-plan"],
    "dsv3_grpo_4node_sbatch": [f"cluster={CLUSTERS}/h100_pyxis.yaml", "cluster.submitter=sbatch",
                               "cluster.checkpoint_dir=/lustre/ckpt", *DSV3_GRPO, "--skip-plan"],
    "sweep_2pt_nemo": [f"cluster={CLUSTERS}/h100_pyxis.yaml", "cluster.nodes=2", *SWEEP],
    "sweep_2pt_sbatch": [f"cluster={CLUSTERS}/a100_venv.yaml", *SWEEP],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_dryrun_matches_golden(case, launch):
    status, out, err = launch(*CASES[case], "--dryrun", "--exp-tag", "golden")
    assert status == 0, err
    out = out.replace(str(CLUSTERS), "<clusters>")
    path = GOLDEN / f"{case}.txt"
    if os.environ.get("R1MEGA_UPDATE_GOLDEN"):
        path.write_text(out)
    assert out == path.read_text()


def test_sweep_gives_each_point_its_own_job_and_run_dir():
    text = (GOLDEN / "sweep_2pt_sbatch.txt").read_text()
    assert text.count("\n#!/bin/bash") == 2
    assert "optim.lr=1e-05 \\\n    hydra.run.dir=/shared/r1mega/jobs/runs/sft-qwen2_5_7b/0\n" in text
    assert "optim.lr=3e-05 \\\n    hydra.run.dir=/shared/r1mega/jobs/runs/sft-qwen2_5_7b/1\n" in text
    nemo = (GOLDEN / "sweep_2pt_nemo.txt").read_text()
    assert nemo.count("$ sbatch --requeue --parsable") == 2
    assert "#SBATCH --job-name=r1mega-sft-qwen2_5_7b-0" in nemo and "#SBATCH --job-name=r1mega-sft-qwen2_5_7b-1" in nemo


def test_every_job_requeues_and_sets_the_multinode_environment():
    for case in CASES:
        text = (GOLDEN / f"{case}.txt").read_text()
        jobs = text.count("\n#!/bin/bash")
        for line in ("#SBATCH --requeue", "#SBATCH --signal=B:USR1@120", "trap r1mega_requeue USR1",
                     "export NCCL_NVLS_ENABLE=0", "export CUDA_DEVICE_MAX_CONNECTIONS=1",
                     "export TORCH_NCCL_ASYNC_ERROR_HANDLING=1"):
            assert sum(l.strip() == line for l in text.splitlines()) == jobs, (case, line)


def _flags(text: str) -> set[str]:
    sbatch = set(re.findall(r"^#SBATCH (--[a-z-]+)", text, re.M))
    commands = set()
    for line in text.splitlines():
        if line.lstrip().startswith(("srun", "torchrun", "--", "$ sbatch")) and not line.startswith("# "):
            commands |= set(re.findall(r"(?<![\w-])(--[a-z][a-z-]+)", line))
    return sbatch | commands


def test_every_flag_is_accounted_for_in_the_docs():
    doc = (HERE.parents[1] / "docs" / "launch.md").read_text()
    flags = set().union(*(_flags((GOLDEN / f"{c}.txt").read_text()) for c in CASES))
    assert {"--requeue", "--signal", "--rdzv-backend", "--container-image", "--nproc-per-node"} <= flags
    missing = sorted(f for f in flags if f"`{f}" not in doc)
    assert not missing, f"flags in the golden scripts without an explanation in docs/launch.md: {missing}"
