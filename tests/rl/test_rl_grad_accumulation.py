"""Global-denominator normalisation: micro-batches and data-parallel ranks add up to one batch.

All in float64, where the only difference between the split and the unsplit computation is
the order of additions (~1e-15 relative); tolerance 1e-12.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import pytest

from r1mega.rl.config import LOSS_AGG_MODES, GRPOConfig
from r1mega.rl.logprobs import vocab_parallel_logprobs
from r1mega.rl.losses import (
    aggregate_loss,
    global_loss_denominator,
    grpo_microbatch_loss,
    local_denominator,
    rollout_correction,
)
from r1mega.training.step import scale_for_megatron
from rl_dist_utils import init_gloo, spawn
from rl_reference import make_batch, reference_loss

EVERYTHING = {"clip_high": 0.28, "dual_clip": 3.0, "kl_beta": 0.05, "entropy_coef": 0.01}
SPLITS = [(0, 3), (3, 4), (4, 8)]  # uneven micro-batches, one of a single response


def _cfg(mode, options, correction="tis"):
    return GRPOConfig(loss_agg=mode, loss_agg_norm_len=12, rollout_is_correction=correction,
                      rollout_is_cap=1.5, **options).validate()


def _slice(b: dict, a: int, z: int) -> dict:
    return {k: v[a:z] for k, v in b.items()}


def _step_loss(b: dict, cfg: GRPOConfig, splits) -> torch.Tensor:
    """Sum of micro-batch losses over ``splits`` with one global denominator."""
    corr = rollout_correction(b["old_logp"], b["rollout_logp"], b["mask"], cfg.rollout_is_correction, cfg.rollout_is_cap)
    b = dict(b, mask=corr.mask, w=corr.weights if corr.weights is not None else torch.ones_like(b["logp"]))
    denom = global_loss_denominator([b["mask"][a:z] for a, z in splits], cfg.loss_agg)
    total = 0.0
    for a, z in splits:
        mb = _slice(b, a, z)
        loss, _ = grpo_microbatch_loss(cfg, mb["logp"], mb["old_logp"], mb["adv"], mb["mask"], denom,
                                       mb["ref_logp"], mb["entropy"], mb["w"])
        total = total + loss
    return total


def _leaf_batch(seed):
    b = make_batch(seed, batch=8)
    b["logp"].requires_grad_(True)
    b["entropy"].requires_grad_(True)
    return b


@pytest.mark.parametrize("correction", ["tis", "mask"])
@pytest.mark.parametrize("options", [{}, EVERYTHING], ids=["plain", "everything"])
@pytest.mark.parametrize("mode", LOSS_AGG_MODES)
def test_microbatches_equal_one_batch(mode, options, correction):
    cfg = _cfg(mode, options, correction)
    split, whole = _leaf_batch(5), _leaf_batch(5)
    loss_split = _step_loss(split, cfg, SPLITS)
    loss_whole = _step_loss(whole, cfg, [(0, 8)])
    assert loss_split.item() == pytest.approx(loss_whole.item(), rel=1e-12)
    g_split = torch.autograd.grad(loss_split, [split["logp"], split["entropy"]], allow_unused=True)
    g_whole = torch.autograd.grad(loss_whole, [whole["logp"], whole["entropy"]], allow_unused=True)
    for gs, gw in zip(g_split, g_whole):
        if gw is None:
            assert gs is None
        else:
            assert torch.allclose(gs, gw, rtol=1e-12, atol=1e-15)
    if correction == "tis":  # and the whole-batch value is the reference's
        assert loss_whole.item() == pytest.approx(reference_loss(make_batch(5, batch=8), cfg).item(), rel=1e-12)


def test_per_microbatch_mean_would_be_wrong():
    """Why the global denominator exists: averaging micro-batch token-means is not the batch mean."""
    b = make_batch(5, batch=8)
    loss = b["logp"] * 0 + torch.arange(72, dtype=torch.float64).view(8, 9)
    naive = sum(aggregate_loss(loss[a:z], b["mask"][a:z], "token-mean", max(local_denominator(b["mask"][a:z], "token-mean"), 1))
                for a, z in SPLITS) / len(SPLITS)
    right = aggregate_loss(loss, b["mask"], "token-mean", local_denominator(b["mask"], "token-mean"))
    assert abs(naive.item() - right.item()) > 1.0


# ------------------------------------------------------------------------- data parallelism

DP_RANK_SPLITS = {0: [(0, 1), (1, 4)], 1: [(4, 6), (6, 8)]}  # 4 responses each, ragged tokens


def _policy_problem():
    """A tiny differentiable policy: logits = x @ W over a 7-token vocabulary."""
    g = torch.Generator().manual_seed(11)
    b = make_batch(6, batch=8)
    x = torch.randn(8, 9, 5, generator=g, dtype=torch.float64)
    weight = torch.randn(5, 7, generator=g, dtype=torch.float64) * 0.5
    target = torch.randint(0, 7, (8, 9), generator=g)
    with torch.no_grad():
        logp0, _ = vocab_parallel_logprobs(x @ weight, target)
    # old / ref / rollout log-probs near the policy's, so the ratios straddle the clip range
    old = logp0 + 0.3 * torch.randn(8, 9, generator=g, dtype=torch.float64)
    ref = logp0 + 0.2 * torch.randn(8, 9, generator=g, dtype=torch.float64)
    rollout = old + 0.3 * torch.randn(8, 9, generator=g, dtype=torch.float64)
    data = dict(x=x, target=target, old_logp=old, ref_logp=ref, rollout_logp=rollout, adv=b["adv"], mask=b["mask"])
    return data, weight


def _accumulate_grad(data, weight, cfg, splits, group=None, dp_size=1):
    """Megatron-style step on one rank: schedule divides by M, we multiply by M·dp."""
    weight = weight.clone().requires_grad_(True)
    corr = rollout_correction(data["old_logp"], data["rollout_logp"], data["mask"], "tis", 1.5)
    denom = global_loss_denominator([data["mask"][a:z] for a, z in splits], cfg.loss_agg, group)
    scale = scale_for_megatron(len(splits), dp_size)
    for a, z in splits:
        logp, entropy = vocab_parallel_logprobs(data["x"][a:z] @ weight, data["target"][a:z])
        loss, _ = grpo_microbatch_loss(cfg, logp, data["old_logp"][a:z], data["adv"][a:z], data["mask"][a:z],
                                       denom, data["ref_logp"][a:z], entropy, corr.weights[a:z])
        (loss * scale / len(splits)).backward()  # "/ len(splits)": what Megatron's schedule does
    return weight.grad


def _dp_worker(rank, world_size, port, out_dir):
    init_gloo(rank, world_size, port)
    data, weight = _policy_problem()
    results = {}
    for mode in LOSS_AGG_MODES:
        cfg = _cfg(mode, EVERYTHING)
        grad = _accumulate_grad(data, weight, cfg, DP_RANK_SPLITS[rank], dist.group.WORLD, world_size)
        dist.all_reduce(grad)
        results[mode] = grad / world_size  # DDP: sum over ranks times 1/dp
    torch.save(results, f"{out_dir}/rank{rank}.pt")
    dist.destroy_process_group()


def test_two_dp_ranks_equal_single_process_big_batch(tmp_path):
    spawn(_dp_worker, 2, tmp_path)
    data, weight = _policy_problem()
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        for mode in LOSS_AGG_MODES:
            want = _accumulate_grad(data, weight, _cfg(mode, EVERYTHING), [(0, 8)])
            assert want.abs().max() > 1e-3  # a real gradient, not trivially zero
            assert torch.allclose(got[mode], want, rtol=1e-12, atol=1e-14), mode
