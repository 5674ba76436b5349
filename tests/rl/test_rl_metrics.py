"""Loss metrics merged over micro-batches, data-parallel ranks and updates equal the metrics of
the whole batch computed at once (float64 references from the per-token values)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.distributed as dist

from r1mega.rl.metrics import LossMetrics
from rl_dist_utils import init_gloo, spawn


def _microbatch(values: torch.Tensor, ratios: torch.Tensor, loss: float) -> dict:
    """What a micro-batch's loss function reports for tokens with these entropies / ratios."""
    return {"actor/entropy": values.mean(), "actor/ratio_max": ratios.max(), "actor/num_tokens": torch.tensor(float(len(values))),
            "loss": torch.tensor(loss)}


def _tokens(seed: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, generator=g, dtype=torch.float64), 1 + torch.rand(n, generator=g, dtype=torch.float64)


# micro-batches of very different sizes: a mean of micro-batch means would be far off
SIZES = [(1, 3), (7, 40), (2, 5), (11, 2)]  # (seed, tokens)


def test_token_weighted_means_maxima_and_summed_loss():
    parts = [_tokens(s, n) for s, n in SIZES]
    m = LossMetrics(updates=1)
    m.add({**LossMetrics.partials([_microbatch(v, r, 0.25) for v, r in parts]), "grad_norm": 3.0})
    out = m.result()
    every_v = torch.cat([v for v, _ in parts])
    assert out["actor/entropy"] == pytest.approx(float(every_v.mean()), rel=1e-6)  # fp32 micro-batch means
    naive = sum(float(v.mean()) for v, _ in parts) / len(parts)
    assert abs(naive - float(every_v.mean())) > 0.01  # the old, unweighted merge would fail the line above
    assert out["actor/ratio_max"] == pytest.approx(max(float(r.max()) for _, r in parts), rel=1e-6)
    assert out["actor/num_tokens"] == sum(n for _, n in SIZES)
    assert out["loss"] == 1.0 and out["grad_norm"] == 3.0


def test_updates_average_losses_and_optimizer_values_and_weight_means_by_tokens():
    parts = [_tokens(s, n) for s, n in SIZES]
    m = LossMetrics(updates=2)
    m.add({**LossMetrics.partials([_microbatch(v, r, 0.5) for v, r in parts[:2]]), "grad_norm": 1.0, "lr": 0.1})
    m.add({**LossMetrics.partials([_microbatch(v, r, 0.1) for v, r in parts[2:]]), "grad_norm": 3.0, "lr": 0.1})
    out = m.result()
    assert out["loss"] == pytest.approx((1.0 + 0.2) / 2)
    assert out["grad_norm"] == pytest.approx(2.0) and out["lr"] == pytest.approx(0.1)
    assert out["actor/entropy"] == pytest.approx(float(torch.cat([v for v, _ in parts]).mean()), rel=1e-6)
    assert out["actor/num_tokens"] == sum(n for _, n in SIZES) / 2  # tokens per update


def _dp_worker(rank, world_size, port, out_dir):
    init_gloo(rank, world_size, port)
    parts = [_tokens(s, n) for s, n in SIZES]
    mine = parts[:1] if rank == 0 else parts[1:]  # unequal shares: 3 tokens vs 47
    m = LossMetrics(updates=1)
    m.add(LossMetrics.partials([_microbatch(v, r, 0.25) for v, r in mine]), group=dist.group.WORLD)
    torch.save(m.result(), f"{out_dir}/rank{rank}.pt")
    dist.destroy_process_group()


def test_two_dp_ranks_merge_like_one(tmp_path):
    spawn(_dp_worker, 2, tmp_path)
    parts = [_tokens(s, n) for s, n in SIZES]
    every_v = torch.cat([v for v, _ in parts])
    for rank in range(2):
        out = torch.load(tmp_path / f"rank{rank}.pt")
        assert out["actor/entropy"] == pytest.approx(float(every_v.mean()), rel=1e-6)
        assert out["actor/ratio_max"] == pytest.approx(max(float(r.max()) for _, r in parts), rel=1e-6)
        assert out["loss"] == pytest.approx(1.0) and math.isclose(out["actor/num_tokens"], 50.0)
