"""Configuration validation: each bad value is one ValueError naming the key."""

from __future__ import annotations

import subprocess
import sys

import pytest

from r1mega.config.errors import ConfigError
from r1mega.config.schema import R1Config
from r1mega.models.config import ModelConfig
from r1mega.parallel.config import ParallelConfig
from r1mega.parallel.dims import ParallelDims

TINY_MOE = ModelConfig(
    num_layers=4, hidden_size=128, num_attention_heads=4, num_experts=8, moe_ffn_hidden_size=64,
    first_k_dense_layers=1, multi_latent_attention=True,
)


@pytest.mark.parametrize(
    "layout,world,needle",
    [
        ({"tp": 3}, 3, "parallel.tp=3 does not divide model.num_attention_heads=4"),
        ({"ep": 3}, 3, "parallel.ep=3 does not divide model.num_experts=8"),
        ({"pp": 3}, 3, "model.num_layers=4 cannot be split evenly into parallel.pp=3"),
        ({"tp": 2}, 3, "world size 3 is not divisible by parallel.tp*pp*cp"),
        ({"tp": 2, "dp": 2}, 2, "does not equal the world size 2"),
        ({"ep": 4}, 2, "parallel.ep*etp = 4*1 must divide parallel.tp*cp*dp"),
        ({"tp": 2, "sequence_parallel": False}, 2, "MoE with parallel.tp > 1 needs parallel.sequence_parallel=true"),
        ({"vpp": 2}, 1, "parallel.vpp=2 needs parallel.pp > 1"),
    ],
)
def test_layout_errors_name_the_key(layout, world, needle):
    with pytest.raises(ValueError, match=needle.replace("*", r"\*").replace("(", r"\(")):
        ParallelDims.resolve(ParallelConfig(**layout), world, TINY_MOE)


def test_batch_divisibility():
    with pytest.raises(ValueError, match=r"trainer.global_batch_size=30 is not divisible by trainer.micro_batch_size\*dp = 4\*2"):
        ParallelDims.resolve(ParallelConfig(), 2, TINY_MOE, 30, 4)


def test_valid_layout_resolves_dp_and_sp():
    dims = ParallelDims.resolve(ParallelConfig(tp=2, ep=4), 8, TINY_MOE, 32, 2)
    assert (dims.dp, dims.sequence_parallel, dims.expert_dp) == (4, True, 2)
    assert dims.num_microbatches(32, 2) == 4


@pytest.mark.parametrize(
    "layout,world,cpu,gpu",
    [({}, 1, 1, 16), ({"tp": 2}, 2, 2, 16), ({"tp": 3}, 3, 3, 48), ({"cp": 2}, 2, 4, 16)],
)
def test_pad_multiple_follows_the_layout_and_the_device(layout, world, cpu, gpu):
    """SP splits the sequence over TP, CP into 2*cp chunks, GPU GEMMs want multiples of 16."""
    dims = ParallelDims.resolve(ParallelConfig(**layout), world)
    assert (dims.pad_multiple(on_gpu=False), dims.pad_multiple(on_gpu=True)) == (cpu, gpu)


@pytest.mark.parametrize(
    "mutate,needle",
    [
        (lambda c: setattr(c.model, "family", "gpt2"), "model.family='gpt2'"),
        (lambda c: setattr(c.model, "moe_router_topk", 9), "model.moe_router_topk=9"),
        (lambda c: setattr(c.optim, "lr", -1.0), "optim.lr must be > 0"),
        (lambda c: setattr(c.data, "template", "alpaca"), "data.template='alpaca'"),
        (lambda c: setattr(c.trainer.precision, "dtype", "fp16"), "trainer.precision.dtype='fp16'"),
        (lambda c: setattr(c.stage, "name", "ppo"), "stage.name='ppo'"),
        (lambda c: setattr(c.data, "seq_length", 100000), "data.seq_length=100000 exceeds"),
    ],
)
def test_root_validation_names_the_key(mutate, needle):
    cfg = R1Config()
    cfg.model.num_experts, cfg.model.moe_ffn_hidden_size = 8, 64
    mutate(cfg)
    with pytest.raises(ValueError, match=needle.replace("(", r"\(").replace("[", r"\[")):
        cfg.validate(1)


def test_default_config_is_valid():
    assert R1Config().validate(1).world_size == 1


def test_the_schema_imports_no_stage():
    """Configuration sits below the stages: importing the schema pulls in no r1mega.stages module."""
    code = "import r1mega.config.schema, sys; print([m for m in sys.modules if m.startswith('r1mega.stages')])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("stage,setting,needle", [
    ("rejection_sampling", ("curation", "samples_per_prompt", 0), "curation.samples_per_prompt must be >= 1"),
    ("distill_generate", ("trainer", "init_from", None), "trainer.init_from must name the checkpoint"),
    ("all_scenario_rl", ("all_scenario", "general_fraction", 1.5), "all_scenario.general_fraction=1.5"),
    ("eval", ("evaluation", "format", "gsm8k"), "evaluation.format='gsm8k'"),
    ("r1_zero", ("evaluation", "temperature", -1.0), "evaluation.temperature must be >= 0"),
    ("r1_zero", ("rl", "group_size", 1), "rl.group_size must be an int >= 2"),
])
def test_each_stage_settings_are_checked_by_validate(stage, setting, needle):
    """R1Config.validate checks the settings of the stage it runs, and only those."""
    group, key, value = setting
    cfg = R1Config()
    cfg.stage.name = stage
    cfg.trainer.init_from = "/ckpt"
    cfg.trainer.global_batch_size, cfg.trainer.micro_batch_size = 16, 8
    setattr(getattr(cfg, group), key, value)
    with pytest.raises(ConfigError, match=needle):
        cfg.validate(1)
    cfg.stage.name = "sft"  # SFT reads none of these
    if group != "trainer":
        cfg.validate(1)
