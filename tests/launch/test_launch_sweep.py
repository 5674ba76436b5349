"""Hydra multirun syntax -> points -> jobs with their own run directories."""

import pytest

from r1mega.launch.cluster import ClusterConfig
from r1mega.launch.jobs import build_jobs, default_name, entrypoint
from r1mega.launch.sweep import expand


def test_cartesian_product_in_hydra_order():
    points = expand(["stage=sft", "optim.lr=1e-5,3e-5", "trainer.seed=range(0,3)"], multirun=True)
    assert len(points) == 6
    assert points[0].overrides == ("stage=sft", "optim.lr=1e-05", "trainer.seed=0")
    assert points[5].overrides == ("stage=sft", "optim.lr=3e-05", "trainer.seed=2")
    assert points[4].swept == (("optim.lr", "3e-05"), ("trainer.seed", "1"))
    assert points[4].label() == "optim.lr=3e-05,trainer.seed=1"


def test_choice_quotes_and_plan_keys():
    points = expand(["+data.tag='a,b'", "x=choice(p,q)", "plan.seq_length=1024,2048"], multirun=True)
    assert len(points) == 4
    assert points[0].train_overrides == ["+data.tag='a,b'", "x=p"]
    assert points[0].plan_overrides == ["plan.seq_length=1024"]


def test_sweep_needs_multirun_and_parseable_overrides():
    with pytest.raises(ValueError, match="add -m/--multirun"):
        expand(["optim.lr=1e-5,3e-5"], multirun=False)
    with pytest.raises(ValueError, match="cannot parse overrides"):
        expand(["optim.lr=(1"], multirun=True)


def test_jobs_get_fixed_run_and_checkpoint_dirs():
    cluster = ClusterConfig(job_dir="/j", checkpoint_dir="/ckpt")
    jobs = build_jobs(cluster, "exp", expand(["a=1", "b=x,y"], multirun=True))
    assert [j.name for j in jobs] == ["exp-0", "exp-1"]
    assert jobs[1].run_dir == "/j/runs/exp/1" and jobs[1].checkpoint_dir == "/ckpt/exp/1"
    assert jobs[1].args == ("a=1", "b=y", "hydra.run.dir=/j/runs/exp/1", "trainer.checkpoint_dir=/ckpt/exp/1")
    single = build_jobs(ClusterConfig(job_dir="/j", runs_dir="/r"), "exp", expand(["a=1"], multirun=False))
    assert single[0].run_dir == "/r/exp" and single[0].args == ("a=1", "hydra.run.dir=/r/exp")
    own = build_jobs(cluster, "exp", expand(["hydra.run.dir=/mine"], multirun=False))
    assert own[0].run_dir == "/mine" and own[0].args.count("hydra.run.dir=/mine") == 1
    with pytest.raises(ValueError, match="hydra.run.dir is set per sweep point"):
        build_jobs(cluster, "exp", expand(["hydra.run.dir=/mine", "b=x,y"], multirun=True))


def test_names_and_entrypoints():
    assert default_name(["stage=r1_zero", "model=deepseek_v3", "x=1"]) == "r1_zero-deepseek_v3"
    assert default_name(["optim.lr=1"]) == "r1mega"
    assert entrypoint(ClusterConfig()).torchrun_args() == ["--no-python", "r1mega-train"]
    module = ClusterConfig(entrypoint="python -m r1mega.cli.train")
    assert entrypoint(module).torchrun_args() == ["-m", "r1mega.cli.train"]
    with pytest.raises(ValueError, match="cluster.entrypoint"):
        entrypoint(ClusterConfig(entrypoint="a b"))
