"""Everything that edits a rollout batch's rewards, mask or token weights before advantages.

Three steps, applied by the GRPO loop in this order:

1. :func:`shape_rewards` (right after the rollout): DAPO's overlong handling, either a soft
   length penalty on the reward (``rl.overlong=penalty``) or truncated responses dropped from
   the loss mask (``rl.overlong=mask``);
2. :func:`correct_mismatch` (after the old-policy log-probs): the rollout/trainer mismatch
   correction (``rl.rollout_is_correction``: truncated IS weights or token masking) and its
   metrics;
3. :func:`kl_in_reward` (after the reference log-probs): r <- r - beta * sum_t KL_t when
   ``rl.kl_in_reward`` (instead of the KL loss term).

The formulas live in :mod:`r1mega.rl.advantages` and :mod:`r1mega.rl.losses`; this module only
decides which apply and writes the results into the :class:`~r1mega.rl.batch.RolloutBatch`.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from r1mega.parallel.comm import broadcast_from_last_stage
from r1mega.rl import advantages as adv
from r1mega.rl.batch import RolloutBatch
from r1mega.rl.config import GRPOConfig
from r1mega.rl.losses import kl_penalty, rollout_correction


def shape_rewards(batch: RolloutBatch, rl: GRPOConfig, max_tokens: int) -> None:
    """Overlong shaping of ``batch.rewards`` / ``batch.mask`` (``max_tokens``: the rollout cap)."""
    if rl.overlong == "penalty":
        batch.rewards = batch.rewards + adv.overlong_penalty(
            batch.lengths, max_tokens, rl.overlong_buffer_len, rl.overlong_penalty_factor)
    if rl.overlong == "mask":
        batch.mask = adv.overlong_filter_mask(batch.mask, batch.truncated)


def correct_mismatch(batch: RolloutBatch, rl: GRPOConfig, dp_group=None) -> dict:
    """Apply ``rl.rollout_is_correction`` against ``batch.old_logp`` on the rows this rank owns;
    returns its metrics over every rank's tokens (``dp_group``), taken from the last pipeline
    stage (the only one holding the trainer's log-probs)."""
    if rl.rollout_is_correction == "none":
        return {}
    idx = torch.tensor(batch.owned_rows(), dtype=torch.long)
    mask = batch.mask[idx]
    corr = rollout_correction(batch.old_logp[idx], batch.rollout_logp[idx], mask, rl.rollout_is_correction,
                              rl.rollout_is_cap)
    batch.mask = batch.mask.clone()
    batch.mask[idx] = corr.mask
    if corr.weights is not None:
        batch.is_weights = torch.ones_like(batch.mask)
        batch.is_weights[idx] = corr.weights
    tokens = float(mask.sum())
    sums = {k: float(v) * tokens for k, v in corr.metrics.items() if not k.endswith("_max")}
    maxima = {k: float(v) for k, v in corr.metrics.items() if k.endswith("_max")}
    sums, maxima = _dp_reduce({**sums, "tokens": tokens}, maxima, dp_group)
    metrics = {k: v / max(sums["tokens"], 1.0) for k, v in sums.items() if k != "tokens"}
    return broadcast_from_last_stage({**metrics, **maxima})


def kl_in_reward(batch: RolloutBatch, rl: GRPOConfig, dp_group=None) -> None:
    """r <- r - beta * sum_t KL(old || ref)_t when ``rl.kl_in_reward`` (needs both log-probs);
    each rank sums the KL of the rows it owns, then the sums are shared over ``dp_group``."""
    if rl.kl_in_reward and batch.ref_logp is not None:
        idx = torch.tensor(batch.owned_rows(), dtype=torch.long)
        kl = kl_penalty(batch.old_logp[idx], batch.ref_logp[idx], rl.kl_estimator)
        sums = torch.zeros(len(batch), dtype=torch.float64)
        sums[idx] = adv.kl_sums(kl, batch.mask[idx]).double()
        if dp_group is not None and dist.is_initialized() and dist.get_world_size(dp_group) > 1:
            dist.all_reduce(sums, group=dp_group)  # each row has one owner: the sum is exact
        batch.rewards = batch.rewards - rl.kl_beta * sums.to(batch.rewards.dtype)


def _dp_reduce(sums: dict, maxima: dict, group) -> tuple[dict, dict]:
    from r1mega.rl.metrics import all_reduce_dict

    return all_reduce_dict(sums, dist.ReduceOp.SUM, group), all_reduce_dict(maxima, dist.ReduceOp.MAX, group)
