"""Bad cluster configs and layouts fail before anything is rendered or submitted."""

import pytest

from conftest import CLUSTERS
from r1mega.launch.cluster import load_cluster

H100 = f"cluster={CLUSTERS}/h100_pyxis.yaml"
QWEN = ["stage=sft", "model=qwen2_5_7b", "parallel.tp=4"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["cluster=slurm_h100", "cluster.account=acct", *QWEN], "cluster.partition must be set when cluster.executor=slurm"),
        (["cluster=slurm_h100", "cluster.partition=batch", *QWEN], "cluster.account must be set"),
        ([H100, "cluster.gpus_per_node=6", *QWEN],
         "parallel.tp=4 does not divide cluster.gpus_per_node=6: a tensor-parallel group would straddle two nodes"),
        ([H100, "cluster.gpus_per_node=4", "stage=sft", "model=deepseek_v3_tiny", "parallel.tp=8"],
         "parallel.tp=8 is larger than cluster.gpus_per_node=4"),
        ([H100, "cluster.nodes=3", "stage=sft", "model=qwen2_5_7b", "parallel.pp=7", "parallel.tp=2"],
         "cluster.nodes*cluster.gpus_per_node = 3*8 = 24 GPUs: world size 24 is not divisible by parallel.tp*pp*cp = 2*7*1 = 14"),
        ([H100, "stage=sft", "model=deepseek_v3", "parallel.ep=64"], "parallel.ep*etp = 64*1 must divide parallel.tp*cp*dp = 1*1*32"),
        ([H100, "stage=sft", "model=deepseek_v3_tiny", "parallel.ep=16"], "parallel.ep=16 does not divide model.num_experts=8"),
        ([H100, *QWEN, "optim.lrr=1"], "r1mega-train configuration: Could not override 'optim.lrr'."),
        ([H100, *QWEN, "stage=nope"], "Could not find 'stage/nope'"),
        ([H100, "cluster.nodes=abc", *QWEN], "cluster.nodes: Value 'abc'"),
        ([H100, "cluster.partiton=batch", *QWEN], "cluster.partiton: Key 'partiton' not in 'ClusterConfig'"),
        ([H100, "cluster.time=4h", *QWEN], "cluster.time='4h' is not [D-]HH:MM:SS"),
        ([H100, "cluster.tunnel=ssh", *QWEN], "cluster.ssh_host must be set when cluster.tunnel=ssh"),
        ([H100, "cluster.venv=/v", *QWEN], "set cluster.container_image or cluster.venv, not both"),
        (["cluster=local", "cluster.nodes=2", *QWEN], "cluster.nodes=2: executor=local runs on one node"),
        (["cluster=nowhere", *QWEN], "cluster='nowhere': no such file"),
        ([H100, "optim.lr=1e-5,3e-5", *QWEN], "sweeps several values; add -m/--multirun"),
        ([H100, *QWEN, "plan.gpu=v100"], "gpu='v100' is not one of"),
    ],
)
def test_bad_config_is_one_message_naming_the_key(argv, message, launch, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status, out, err = launch(*argv, "--dryrun")
    assert status == 2
    assert out == ""
    assert err.startswith("r1mega-launch: error: ") and err.count("\n") == 1
    assert message in err
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # nothing rendered or written


DSV3_GRPO = ["stage=sft", "model=deepseek_v3", "parallel.pp=16", "plan.first_stage_layers=3", "plan.last_stage_layers=2",
             "plan.recompute=full", "data.seq_length=1536", "trainer.micro_batch_size=1", "plan.rollout=sleep"]


def test_deepseek_v3_on_4_nodes_is_refused_by_the_planner(launch):
    status, out, err = launch(H100, *DSV3_GRPO, "parallel.ep=2", "--dryrun")
    assert status == 1 and out == ""
    assert "deepseek_v3 on 4 x 8 H100 80GB" in err and "DOES NOT FIT" in err
    assert "not submitted: a job does not fit" in err


def test_deepseek_v3_grpo_recipe_passes_preflight_on_32_nodes(launch):
    status, out, err = launch(H100, "cluster.nodes=32", *DSV3_GRPO, "parallel.ep=16", "trainer.global_batch_size=512",
                              "--dryrun", "--exp-tag", "t")
    assert status == 0, err
    assert "mbs=1 x seq=1536, 32 micro-batches" in err and "FITS (peak stage 1" in err
    assert "#SBATCH --nodes=32" in out and "--nnodes 32 --nproc-per-node 8" in out


def test_the_estimate_uses_the_composed_trainer_defaults(launch):
    status, _, err = launch(H100, "cluster.nodes=1", "cluster.gpus_per_node=4", "stage=sft", "--dryrun", "--exp-tag", "t")
    assert status == 0, err
    # conf/config.yaml: model deepseek_v3_tiny, data.seq_length 256, trainer batch 32 / 8
    assert "deepseek_v3_tiny on 1 x 4 H100 80GB" in err and "mbs=8 x seq=256, 1 micro-batch;" in err
    # ... and the trainer's batch check runs too
    status, _, err = launch(H100, "stage=sft", "--dryrun")
    assert status == 2 and "trainer.global_batch_size=32 is not divisible by trainer.micro_batch_size*dp = 8*32" in err


def test_without_model_the_layout_is_still_checked(launch):
    status, _, err = launch(H100, "stage=sft", "parallel.pp=3", "--dryrun", "--skip-plan")
    assert status == 2 and "world size 32 is not divisible by parallel.tp*pp*cp" in err
    status, out, err = launch(H100, "stage=sft", "parallel.pp=4", "--dryrun", "--skip-plan", "--exp-tag", "t")
    assert status == 0 and "memory estimate skipped (--skip-plan)" in err


@pytest.mark.parametrize("name", ["local", "slurm_h100", "slurm_h200", "slurm_venv"])
def test_shipped_cluster_configs_load(name):
    extra = ["account=a", "partition=p", "ssh_host=h", "ssh_user=u"] if name != "local" else []
    cluster = load_cluster(name, extra)
    assert cluster.executor == ("local" if name == "local" else "slurm")
    assert cluster.world_size == cluster.nodes * cluster.gpus_per_node
