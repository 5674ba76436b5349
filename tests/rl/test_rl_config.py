"""GRPOConfig defaults, derived properties and validation messages."""

from __future__ import annotations

import dataclasses

import pytest

from r1mega.rl.config import GRPOConfig


def test_defaults_are_vanilla_grpo():
    cfg = GRPOConfig().validate()
    assert (cfg.clip_low, cfg.clip_high, cfg.dual_clip) == (0.2, 0.2, None)
    assert (cfg.kl_beta, cfg.kl_estimator, cfg.kl_in_reward) == (0.001, "k3", False)
    assert (cfg.adv_estimator, cfg.loss_agg, cfg.entropy_coef) == ("grpo", "token-mean", 0.0)
    assert (cfg.ppo_epochs, cfg.num_minibatches, cfg.rollout_is_correction) == (1, 1, "none")
    assert cfg.needs_reference and cfg.kl_in_loss


def test_every_field_has_a_docstring():
    import inspect

    import r1mega.rl.config as module

    source = inspect.getsource(module.GRPOConfig)
    for field in dataclasses.fields(GRPOConfig):
        after = source.split(f"    {field.name}:", 1)[1].split("\n", 2)[1]
        assert after.strip().startswith('"""'), field.name


def test_reference_needs():
    assert not GRPOConfig(kl_beta=0.0).needs_reference
    cfg = GRPOConfig(kl_beta=0.01, kl_in_reward=True)
    assert cfg.needs_reference and not cfg.kl_in_loss


@pytest.mark.parametrize(
    "overrides,field",
    [
        ({"group_size": 1}, "rl.group_size"),
        ({"adv_estimator": "ppo"}, "rl.adv_estimator"),
        ({"clip_low": 1.0}, "rl.clip_low"),
        ({"clip_high": -0.1}, "rl.clip_high"),
        ({"dual_clip": 1.0}, "rl.dual_clip"),
        ({"kl_beta": -1.0}, "rl.kl_beta"),
        ({"kl_estimator": "k4"}, "rl.kl_estimator"),
        ({"loss_agg": "sum"}, "rl.loss_agg"),
        ({"loss_agg": "seq-mean-token-sum-norm"}, "rl.loss_agg_norm_len"),
        ({"max_dynamic_sampling_rounds": 0}, "rl.max_dynamic_sampling_rounds"),
        ({"overlong": "cut"}, "rl.overlong"),
        ({"overlong_buffer_len": 0}, "rl.overlong_buffer_len"),
        ({"overlong_penalty_factor": -1.0}, "rl.overlong_penalty_factor"),
        ({"rollout_is_correction": "is"}, "rl.rollout_is_correction"),
        ({"rollout_is_cap": 1.0}, "rl.rollout_is_cap"),
        ({"entropy_coef": -0.1}, "rl.entropy_coef"),
        ({"ppo_epochs": 0}, "rl.ppo_epochs"),
        ({"num_minibatches": 0}, "rl.num_minibatches"),
    ],
)
def test_validation_names_the_field(overrides, field):
    with pytest.raises(ValueError, match=field.replace(".", r"\.") + " "):
        GRPOConfig(**overrides).validate()


def test_from_mapping():
    cfg = GRPOConfig.from_mapping({"clip_high": 0.28, "loss_agg": "seq-mean-token-sum-norm", "loss_agg_norm_len": 4096})
    assert cfg.clip_high == 0.28 and cfg.loss_agg_norm_len == 4096
    with pytest.raises(ValueError, match="rl.clip_hi"):
        GRPOConfig.from_mapping({"clip_hi": 0.28})
    with pytest.raises(ValueError, match="rl.clip_high"):
        GRPOConfig.from_mapping({"clip_high": -1})
