"""Straightforward float64 reference of the GRPO loss, for tests.

Written token by token with explicit case analysis (which clip is active), deliberately
*not* as a vectorised copy of ``r1mega.rl.losses``: the implementation uses the textbook
max/min formula, the reference decides the branch with if/else on the ratio's value, so the
two agree only if the maths does. Gradients come from autograd through these scalar ops
(a clipped branch is a constant, hence gradient 0).
"""

from __future__ import annotations

import math

import torch

from r1mega.rl.config import GRPOConfig


def make_batch(seed: int, batch: int = 6, seq: int = 9, dtype=torch.float64) -> dict:
    """Random GRPO micro-batch. Inputs are drawn in fp32 and then cast, so fp32 and fp64 runs
    see identical values. Covers: ragged lengths, one fully masked response, an advantage of
    0, ratios far outside the clip range on both sides and beyond the dual clip, and extreme
    (finite) junk at padded positions that the mask must hide."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, seq + 1, (batch,), generator=g)
    lengths[0], lengths[1], lengths[-1] = seq, seq, 0
    mask = torch.arange(seq)[None, :] < lengths[:, None]
    old = -torch.rand(batch, seq, generator=g) * 4.0 - 0.05
    delta = torch.randn(batch, seq, generator=g) * 0.5
    delta[1, :4] = torch.tensor([1.5, -1.2, 0.9, 1.3])  # beyond dual clip 3, below 0.8, ...
    delta[0, :4] = torch.tensor([0.6, -0.7, 0.4, 0.22])  # 0.22: clipped at 0.2, not at 0.28
    logp = old + delta
    ref = old + torch.randn(batch, seq, generator=g) * 0.3
    rollout = old + torch.randn(batch, seq, generator=g) * 0.4
    adv = torch.randn(batch, generator=g)
    adv[0], adv[1], adv[2] = 0.9, -1.3, 0.0
    entropy = torch.rand(batch, seq, generator=g) * 3.0
    pad = ~mask
    # exp(old - rollout) and exp(logp - old) overflow even in float64 at padding
    logp[pad], old[pad], ref[pad], rollout[pad], entropy[pad] = -30.0, -1e4, 1e4, -1e9, 50.0
    out = dict(logp=logp, old_logp=old, ref_logp=ref, rollout_logp=rollout, adv=adv, entropy=entropy)
    out = {k: v.to(dtype) for k, v in out.items()}
    out["mask"] = mask
    return out


def token_loss(lp, olp, a: float, rlp, ent, w: float, cfg: GRPOConfig):
    """One token's loss from 0-d tensors ``lp`` (with grad), ``olp``, ``rlp``, ``ent``."""
    ratio = torch.exp(lp - olp)
    r = ratio.item()
    if a > 0 and r > 1 + cfg.clip_high:
        pg = lp * 0.0 - a * (1 + cfg.clip_high)
    elif a < 0 and r < 1 - cfg.clip_low:
        pg = lp * 0.0 - a * (1 - cfg.clip_low)
    elif a < 0 and cfg.dual_clip is not None and r > cfg.dual_clip:
        pg = lp * 0.0 - a * cfg.dual_clip
    else:
        pg = -a * ratio
    loss = w * pg
    if cfg.kl_beta > 0 and not cfg.kl_in_reward:
        x = rlp - lp  # log pi_ref / pi_theta
        kl = {"k1": -x, "k2": 0.5 * x * x, "k3": torch.exp(x) - x - 1.0}[cfg.kl_estimator]
        loss = loss + cfg.kl_beta * kl
    if cfg.entropy_coef > 0:
        loss = loss - cfg.entropy_coef * ent
    return loss


def tis_weight(olp: float, rollout_lp: float, cfg: GRPOConfig) -> float:
    if cfg.rollout_is_correction != "tis":
        return 1.0
    return min(math.exp(olp - rollout_lp), cfg.rollout_is_cap)


def per_sequence_losses(b: dict, cfg: GRPOConfig) -> list[list]:
    """Token losses of every response, valid tokens only, as lists of 0-d tensors."""
    out = []
    for i in range(b["mask"].shape[0]):
        seq = []
        for t in range(b["mask"].shape[1]):
            if not b["mask"][i, t]:
                continue
            w = tis_weight(b["old_logp"][i, t].item(), b["rollout_logp"][i, t].item(), cfg)
            seq.append(
                token_loss(b["logp"][i, t], b["old_logp"][i, t], b["adv"][i].item(),
                           b["ref_logp"][i, t], b["entropy"][i, t], w, cfg)
            )
        out.append(seq)
    return out


def aggregate(seqs: list[list], mode: str, norm_len=None):
    """The batch loss from per-response token losses (sequences without tokens do not count)."""
    seqs = [s for s in seqs if s]
    if mode == "token-mean":
        return sum(sum(s) for s in seqs) / sum(len(s) for s in seqs)
    if mode == "seq-mean-token-mean":
        return sum(sum(s) / len(s) for s in seqs) / len(seqs)
    if mode == "seq-mean-token-sum":
        return sum(sum(s) for s in seqs) / len(seqs)
    if mode == "seq-mean-token-sum-norm":
        return sum(sum(s) for s in seqs) / (len(seqs) * norm_len)
    raise AssertionError(mode)


def reference_loss(b: dict, cfg: GRPOConfig):
    return aggregate(per_sequence_losses(b, cfg), cfg.loss_agg, cfg.loss_agg_norm_len)


def reference_magnitude(b: dict, cfg: GRPOConfig) -> float:
    """Aggregate of |each summand| of the per-token losses: the scale that fp32 rounding error
    is proportional to (sums of mixed-sign terms cancel, their rounding errors do not)."""
    seqs = []
    for i in range(b["mask"].shape[0]):
        seq = []
        for t in range(b["mask"].shape[1]):
            if not b["mask"][i, t]:
                continue
            d = (b["logp"][i, t] - b["old_logp"][i, t]).item()
            x = (b["ref_logp"][i, t] - b["logp"][i, t]).item()
            m = abs(b["adv"][i].item()) * max(math.exp(d), 1.0) * 2.0
            m += cfg.kl_beta * (math.exp(x) + abs(x) + 1.0) + cfg.entropy_coef * b["entropy"][i, t].item()
            seq.append(m)
        seqs.append(seq)
    return float(aggregate(seqs, cfg.loss_agg, cfg.loss_agg_norm_len))
