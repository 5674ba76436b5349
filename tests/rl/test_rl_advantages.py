"""Group-relative advantages, token broadcasting and reward shaping, on hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from r1mega.rl.advantages import (
    compute_advantages,
    kl_penalized_rewards,
    overlong_filter_mask,
    overlong_penalty,
)

# Three groups of G = 4: mixed {1,0,0,1}, all equal {1,1,1,1}, one success {0.5,0,0,0}.
REWARDS = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.0, 0.0, 0.0], dtype=torch.float64)
S3 = math.sqrt(3.0)
# group 1: mean 0.5, unbiased std sqrt(4·0.25/3) = 1/sqrt(3); group 3: mean 0.125, std
# sqrt((0.375² + 3·0.125²)/3) = 0.25. RLOO: r_i minus the mean of the other three.
EXPECTED = {
    "grpo": [0.5 * S3, -0.5 * S3, -0.5 * S3, 0.5 * S3, 0, 0, 0, 0, 1.5, -0.5, -0.5, -0.5],
    "grpo_no_std": [0.5, -0.5, -0.5, 0.5, 0, 0, 0, 0, 0.375, -0.125, -0.125, -0.125],
    "rloo": [2 / 3, -2 / 3, -2 / 3, 2 / 3, 0, 0, 0, 0, 0.5, -1 / 6, -1 / 6, -1 / 6],
}


@pytest.mark.parametrize("estimator", list(EXPECTED))
def test_hand_computed_advantages(estimator):
    adv, stats = compute_advantages(REWARDS, 4, estimator, eps=0.0)
    assert torch.allclose(adv, torch.tensor(EXPECTED[estimator], dtype=torch.float64), rtol=1e-14, atol=1e-15)
    assert stats.mean.tolist() == [0.5, 1.0, 0.125]
    assert stats.constant.tolist() == [False, True, False]
    assert stats.std[2].item() == pytest.approx(0.25, rel=1e-14)


def test_grpo_eps_is_added_to_std():
    adv, _ = compute_advantages(REWARDS, 4, "grpo", eps=1e-6)
    assert adv[8].item() == pytest.approx(0.375 / (0.25 + 1e-6), rel=1e-14)


@pytest.mark.parametrize("estimator", list(EXPECTED))
@pytest.mark.parametrize("value", [0.1, 1.0, 0.0, -3.7])
def test_all_equal_groups_give_exactly_zero(estimator, value):
    """0.1·3 is not exactly representable, so a naive (r - mean) would not be exactly 0 and
    std would be ~1e-17; the implementation sets constant groups to 0 explicitly."""
    rewards = torch.full((6,), value, dtype=torch.float32)
    adv, stats = compute_advantages(rewards, 3, estimator)
    assert torch.equal(adv, torch.zeros(6)) and stats.constant.all()


def test_float32_rewards():
    adv, stats = compute_advantages(REWARDS.float(), 4)
    assert adv.dtype == torch.float32 and stats.constant.tolist() == [False, True, False]


def test_advantage_errors():
    with pytest.raises(ValueError, match="split"):
        compute_advantages(REWARDS[:10], 4)
    with pytest.raises(ValueError, match="group_size >= 2"):
        compute_advantages(REWARDS, 1)
    with pytest.raises(ValueError, match="estimator"):
        compute_advantages(REWARDS, 4, "ppo")
    with pytest.raises(ValueError, match="1-D"):
        compute_advantages(REWARDS.view(3, 4), 4)


def test_kl_in_reward():
    rewards = torch.tensor([1.0, 0.0])
    kl = torch.tensor([[0.1, 0.2, 9.0], [0.5, 9.0, 9.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]], dtype=torch.bool)
    out = kl_penalized_rewards(rewards, kl, mask, beta=0.5)
    assert torch.allclose(out, torch.tensor([1.0 - 0.5 * 0.3, -0.5 * 0.5]))


def test_overlong_penalty_hand_values():
    lengths = torch.tensor([10, 15, 16, 18, 20, 25])
    # max 20, buffer 5: the ramp starts after 15 tokens and reaches -factor at 20
    out = overlong_penalty(lengths, max_len=20, buffer_len=5, penalty_factor=0.5)
    assert torch.allclose(out, torch.tensor([0.0, 0.0, -0.1, -0.3, -0.5, -0.5]))
    with pytest.raises(ValueError):
        overlong_penalty(lengths, max_len=20, buffer_len=0)


def test_overlong_filter_mask():
    mask = torch.ones(3, 2, dtype=torch.bool)
    out = overlong_filter_mask(mask, torch.tensor([False, True, False]))
    assert out.tolist() == [[True, True], [False, False], [True, True]]
