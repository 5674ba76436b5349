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


def correct_mismatch(batch: RolloutBatch, rl: GRPOConfig) -> dict:
    """Apply ``rl.rollout_is_correction`` against ``batch.old_logp``; returns its metrics,
    taken from the last pipeline stage (the only one holding the trainer's log-probs)."""
    if rl.rollout_is_correction == "none":
        return {}
    corr = rollout_correction(batch.old_logp, batch.rollout_logp, batch.mask, rl.rollout_is_correction,
                              rl.rollout_is_cap)
    batch.mask = corr.mask
    if corr.weights is not None:
        batch.is_weights = corr.weights
    return broadcast_from_last_stage({k: float(v) for k, v in corr.metrics.items()})


def kl_in_reward(batch: RolloutBatch, rl: GRPOConfig) -> None:
    """r <- r - beta * sum_t KL(old || ref)_t when ``rl.kl_in_reward`` (needs both log-probs)."""
    if rl.kl_in_reward and batch.ref_logp is not None:
        kl = kl_penalty(batch.old_logp, batch.ref_logp, rl.kl_estimator)
        batch.rewards = adv.kl_penalized_rewards(batch.rewards, kl, batch.mask, rl.kl_beta)
