"""GRPO loss and gradients against the token-by-token float64 reference (rl_reference.py)."""

from __future__ import annotations

import math

import pytest
import torch

from r1mega.rl.config import LOSS_AGG_MODES, GRPOConfig
from r1mega.rl.losses import (
    aggregate_loss,
    clipped_surrogate,
    grpo_microbatch_loss,
    grpo_token_loss,
    kl_penalty,
    local_denominator,
    rollout_correction,
)
from rl_reference import make_batch, reference_loss, reference_magnitude

OPTIONS = {
    "plain": {},
    "clip_higher": {"clip_high": 0.28},
    "dual_clip": {"dual_clip": 3.0},
    "kl_k1": {"kl_beta": 0.1, "kl_estimator": "k1"},
    "kl_k2": {"kl_beta": 0.1, "kl_estimator": "k2"},
    "kl_k3": {"kl_beta": 0.1, "kl_estimator": "k3"},
    "kl_in_reward": {"kl_beta": 0.1, "kl_in_reward": True},
    "entropy": {"entropy_coef": 0.01},
    "tis": {"rollout_is_correction": "tis", "rollout_is_cap": 2.0},
    "everything": {"clip_high": 0.28, "dual_clip": 3.0, "kl_beta": 0.05, "kl_estimator": "k3",
                   "entropy_coef": 0.01, "rollout_is_correction": "tis", "rollout_is_cap": 1.5},
}
NORM_LEN = 12


def _cfg(mode: str, **options) -> GRPOConfig:
    return GRPOConfig(loss_agg=mode, loss_agg_norm_len=NORM_LEN, **options).validate()


def _leaf(batch: dict) -> dict:
    b = dict(batch)
    b["logp"] = b["logp"].clone().requires_grad_(True)
    b["entropy"] = b["entropy"].clone().requires_grad_(True)
    return b


def _implementation(b: dict, cfg: GRPOConfig):
    weights = None
    if cfg.rollout_is_correction != "none":
        weights = rollout_correction(b["old_logp"], b["rollout_logp"], b["mask"],
                                     cfg.rollout_is_correction, cfg.rollout_is_cap).weights
    denom = local_denominator(b["mask"], cfg.loss_agg)
    return grpo_microbatch_loss(cfg, b["logp"], b["old_logp"], b["adv"], b["mask"], denom,
                                ref_logp=b["ref_logp"], entropy=b["entropy"], is_weights=weights)


def _grads(loss, b):
    g_logp, g_ent = torch.autograd.grad(loss, [b["logp"], b["entropy"]], allow_unused=True)
    return g_logp, (torch.zeros_like(b["entropy"]) if g_ent is None else g_ent)


@pytest.mark.parametrize("option", list(OPTIONS))
@pytest.mark.parametrize("mode", LOSS_AGG_MODES)
def test_float64_matches_reference(mode, option):
    cfg = _cfg(mode, **OPTIONS[option])
    b_impl, b_ref = _leaf(make_batch(0)), _leaf(make_batch(0))
    loss, _ = _implementation(b_impl, cfg)
    ref = reference_loss(b_ref, cfg)
    # Both sides are exact float64 arithmetic on the same inputs, differing only in the order
    # of a few dozen additions: ~1e-15 relative. 1e-6 is the contract.
    assert abs(loss.item() - ref.item()) <= 1e-6 * abs(ref.item())
    for got, want in zip(_grads(loss, b_impl), _grads(ref, b_ref)):
        assert torch.allclose(got, want, rtol=1e-6, atol=1e-6 * want.abs().max().item())


@pytest.mark.parametrize("option", ["plain", "everything"])
@pytest.mark.parametrize("mode", LOSS_AGG_MODES)
def test_padding_gets_zero_gradient(mode, option):
    cfg = _cfg(mode, **OPTIONS[option])
    b = _leaf(make_batch(1))
    loss, _ = _implementation(b, cfg)
    g_logp, g_ent = _grads(loss, b)
    assert torch.isfinite(loss)
    assert torch.all(g_logp[~b["mask"]] == 0) and torch.all(g_ent[~b["mask"]] == 0)


@pytest.mark.parametrize("option", list(OPTIONS))
@pytest.mark.parametrize("mode", LOSS_AGG_MODES)
def test_float32_matches_float64_reference(mode, option):
    """fp32 tolerance. Inputs are identical (drawn in fp32), so only arithmetic rounding differs.
    Each token's loss is a chain of <= ~10 fp32 operations (sub, exp, mul, clamp, max, ...),
    each with relative error <= 2^-24 ~ 6e-8 of the magnitudes involved, and the sums over
    <= 54 tokens add at most ~log2(54)·2^-24 relative to the sum of |summands|. So the error
    is bounded by ~20·6e-8 ~ 1.2e-6 times the aggregate of |summands| (``reference_magnitude``),
    not of the (possibly cancelling) loss itself; 1e-5 leaves ~8x headroom. Gradients are
    elementwise chains of the same length, so the same bound holds per element relative to
    the largest gradient entry."""
    cfg = _cfg(mode, **OPTIONS[option])
    b32, b64 = _leaf(make_batch(2, dtype=torch.float32)), _leaf(make_batch(2))
    loss, _ = _implementation(b32, cfg)
    ref = reference_loss(b64, cfg)
    assert loss.dtype == torch.float32
    scale = reference_magnitude(b64, cfg)
    assert abs(loss.item() - ref.item()) <= 1e-5 * scale
    for got, want in zip(_grads(loss, b32), _grads(ref, b64)):
        assert torch.allclose(got.double(), want, rtol=1e-5, atol=1e-5 * want.abs().max().item())


def test_reference_exercises_every_branch():
    """The random batch really hits low clip, high clip (incl. clip-higher) and dual clip."""
    b = make_batch(0)
    adv = b["adv"][:, None].expand_as(b["logp"])
    sym = clipped_surrogate(b["logp"], b["old_logp"], adv, 0.2, 0.2, 3.0)
    higher = clipped_surrogate(b["logp"], b["old_logp"], adv, 0.2, 0.28, 3.0)
    m = b["mask"]
    assert sym.clipped_low[m].sum() >= 1 and sym.dual_clipped[m].sum() >= 1
    assert higher.clipped_high[m].sum() < sym.clipped_high[m].sum()  # clip-higher clips fewer
    assert higher.clipped_high[m].sum() >= 1


def test_surrogate_hand_values():
    """Six tokens, one per case, values worked out by hand (ε_low 0.2, ε_high 0.28, c = 3)."""
    ratio = torch.tensor([1.1, 1.5, 0.5, 0.9, 4.0, 1.2], dtype=torch.float64)
    adv = torch.tensor([2.0, 2.0, -1.0, -1.0, -1.0, -1.0], dtype=torch.float64)
    logp = ratio.log().requires_grad_(True)
    sur = clipped_surrogate(logp, torch.zeros_like(logp), adv, 0.2, 0.28, 3.0)
    # in range: -Aρ; high clip: -A·1.28; low clip on A<0: -A·0.8; dual: 3|A|; A<0, ρ in range: -Aρ
    want = torch.tensor([-2.2, -2.56, 0.8, 0.9, 3.0, 1.2], dtype=torch.float64)
    assert torch.allclose(sur.loss, want, rtol=1e-14)
    assert sur.clipped_high.tolist() == [False, True, False, False, False, False]
    assert sur.clipped_low.tolist() == [False, False, True, False, False, False]
    assert sur.dual_clipped.tolist() == [False, False, False, False, True, False]
    (grad,) = torch.autograd.grad(sur.loss.sum(), logp)
    want_grad = torch.tensor([-2.2, 0.0, 0.0, 0.9, 0.0, 1.2], dtype=torch.float64)  # -Aρ or 0
    assert torch.allclose(grad, want_grad, rtol=1e-14, atol=0)


@pytest.mark.parametrize("estimator,value", [("k1", -0.5), ("k2", 0.125), ("k3", math.exp(0.5) - 1.5)])
def test_kl_estimators_hand_values(estimator, value):
    logp = torch.tensor([-1.0], dtype=torch.float64)
    ref = torch.tensor([-0.5], dtype=torch.float64)  # x = ref - logp = 0.5
    assert kl_penalty(logp, ref, estimator).item() == pytest.approx(value, rel=1e-14)


def test_on_policy_ratio_is_exactly_one_and_kl_exactly_zero():
    b = make_batch(3)
    logp = b["old_logp"].clone().requires_grad_(True)
    ref = b["old_logp"].clone()
    adv = b["adv"][:, None].expand_as(logp)
    sur = clipped_surrogate(logp, b["old_logp"], adv, 0.2, 0.28, 3.0)
    assert torch.equal(sur.ratio, torch.ones_like(sur.ratio))
    for est in ("k1", "k2", "k3"):
        assert torch.equal(kl_penalty(logp, ref, est), torch.zeros_like(logp))
    cfg = _cfg("token-mean", kl_beta=0.1, kl_estimator="k3")
    loss, metrics = grpo_microbatch_loss(cfg, logp, b["old_logp"], b["adv"], b["mask"],
                                         local_denominator(b["mask"], "token-mean"), ref_logp=ref)
    assert metrics["actor/ratio_mean"].item() == 1.0 and metrics["actor/ratio_max"].item() == 1.0
    assert metrics["actor/approx_kl"].item() == 0.0 and metrics["actor/ref_kl"].item() == 0.0
    assert metrics["actor/clip_frac_low"].item() == 0.0 and metrics["actor/clip_frac_high"].item() == 0.0
    (grad,) = torch.autograd.grad(loss, logp)
    # d/dlogp of -Aρ is -A at ρ = 1, and the k3 gradient 1 - e^0 vanishes exactly.
    n = int(b["mask"].sum())
    want = torch.where(b["mask"], -adv / n, torch.zeros_like(adv))
    assert torch.allclose(grad, want, rtol=1e-15, atol=0)


def test_metrics_match_loops():
    cfg = _cfg("token-mean", clip_high=0.28, dual_clip=3.0, kl_beta=0.1, kl_estimator="k2", entropy_coef=0.01)
    b = make_batch(0)
    _, metrics = grpo_token_loss(cfg, b["logp"], b["old_logp"], b["adv"], b["mask"], b["ref_logp"], b["entropy"])
    rows = [(i, t) for i in range(6) for t in range(9) if b["mask"][i, t]]
    ratios = [math.exp((b["logp"][i, t] - b["old_logp"][i, t]).item()) for i, t in rows]
    advs = [b["adv"][i].item() for i, _ in rows]
    n = len(rows)
    assert metrics["actor/num_tokens"].item() == n
    assert metrics["actor/clip_frac_high"].item() == pytest.approx(sum(a > 0 and r > 1.28 for a, r in zip(advs, ratios)) / n)
    assert metrics["actor/clip_frac_low"].item() == pytest.approx(sum(a < 0 and r < 0.8 for a, r in zip(advs, ratios)) / n)
    assert metrics["actor/dual_clip_frac"].item() == pytest.approx(sum(a < 0 and r > 3 for a, r in zip(advs, ratios)) / n)
    assert metrics["actor/ratio_max"].item() == pytest.approx(max(ratios), rel=1e-12)
    assert metrics["actor/ratio_mean"].item() == pytest.approx(sum(ratios) / n, rel=1e-12)
    assert metrics["actor/approx_kl"].item() == pytest.approx(sum(r - 1 - math.log(r) for r in ratios) / n, rel=1e-12)
    assert metrics["actor/entropy"].item() == pytest.approx(sum(b["entropy"][i, t].item() for i, t in rows) / n, rel=1e-12)
    ref_kl = [0.5 * (b["logp"][i, t] - b["ref_logp"][i, t]).item() ** 2 for i, t in rows]
    assert metrics["actor/ref_kl"].item() == pytest.approx(sum(ref_kl) / n, rel=1e-12)


@pytest.mark.parametrize("mode", ["none", "tis", "mask"])
def test_rollout_correction_against_loops(mode):
    b = make_batch(4)
    cap = 1.5
    corr = rollout_correction(b["old_logp"], b["rollout_logp"], b["mask"], mode, cap)
    rows = [(i, t) for i in range(6) for t in range(9) if b["mask"][i, t]]
    lr = [(b["old_logp"][i, t] - b["rollout_logp"][i, t]).item() for i, t in rows]
    ratios = [math.exp(x) for x in lr]
    n = len(rows)
    assert corr.metrics["mismatch/kl_k1"].item() == pytest.approx(sum(-x for x in lr) / n, rel=1e-12)
    assert corr.metrics["mismatch/kl_k3"].item() == pytest.approx(sum(r - x - 1 for r, x in zip(ratios, lr)) / n, rel=1e-12)
    assert corr.metrics["mismatch/ratio_max"].item() == pytest.approx(max(ratios), rel=1e-12)
    if mode == "none":
        assert corr.weights is None and corr.mask is b["mask"]
        assert corr.metrics["mismatch/corrected_frac"].item() == 0.0
    elif mode == "tis":
        for (i, t), r in zip(rows, ratios):
            assert corr.weights[i, t].item() == pytest.approx(min(r, cap), rel=1e-12)
        truncated = sum(r > cap for r in ratios)
        assert truncated >= 1
        assert corr.metrics["mismatch/corrected_frac"].item() == pytest.approx(truncated / n)
        assert torch.equal(corr.mask, b["mask"])
    else:
        rejected = {(i, t) for (i, t), r in zip(rows, ratios) if r > cap or r < 1 / cap}
        assert rejected
        for i in range(6):
            for t in range(9):
                assert bool(corr.mask[i, t]) == (bool(b["mask"][i, t]) and (i, t) not in rejected)
        assert corr.metrics["mismatch/corrected_frac"].item() == pytest.approx(len(rejected) / n)


def test_tis_weights_are_detached():
    b = make_batch(4)
    old = b["old_logp"].clone().requires_grad_(True)
    corr = rollout_correction(old, b["rollout_logp"], b["mask"], "tis", 2.0)
    assert not corr.weights.requires_grad


def test_aggregate_hand_values():
    loss = torch.tensor([[1.0, 2.0, 3.0, 99.0], [4.0, 99.0, 99.0, 99.0], [99.0, 99.0, 99.0, 99.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]], dtype=torch.bool)
    assert local_denominator(mask, "token-mean") == 4
    assert local_denominator(mask, "seq-mean-token-sum") == 2  # the empty response does not count
    assert aggregate_loss(loss, mask, "token-mean", 4).item() == pytest.approx(10 / 4)
    assert aggregate_loss(loss, mask, "seq-mean-token-mean", 2).item() == pytest.approx((2 + 4) / 2)
    assert aggregate_loss(loss, mask, "seq-mean-token-sum", 2).item() == pytest.approx((6 + 4) / 2)
    assert aggregate_loss(loss, mask, "seq-mean-token-sum-norm", 2, norm_len=4).item() == pytest.approx(10 / 8)
    empty = aggregate_loss(loss.requires_grad_(True), torch.zeros_like(mask), "token-mean", 0)
    assert empty.item() == 0.0 and empty.requires_grad


def test_user_errors_raise_value_error():
    b = make_batch(0)
    with pytest.raises(ValueError, match="ref_logp"):
        grpo_token_loss(_cfg("token-mean", kl_beta=0.1), b["logp"], b["old_logp"], b["adv"], b["mask"])
    with pytest.raises(ValueError, match="entropy"):
        grpo_token_loss(_cfg("token-mean", kl_beta=0.0, entropy_coef=0.1), b["logp"], b["old_logp"], b["adv"], b["mask"])
    with pytest.raises(ValueError, match="norm_len"):
        aggregate_loss(b["logp"], b["mask"], "seq-mean-token-sum-norm", 3)
    with pytest.raises(ValueError, match="loss aggregation"):
        aggregate_loss(b["logp"], b["mask"], "sum", 3)
    with pytest.raises(ValueError, match="kl estimator"):
        kl_penalty(b["logp"], b["ref_logp"], "k4")
    with pytest.raises(ValueError, match="shape"):
        grpo_token_loss(_cfg("token-mean", kl_beta=0.0), b["logp"], b["old_logp"][:, :3], b["adv"], b["mask"])
