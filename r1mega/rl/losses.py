"""The GRPO loss: clipped surrogate, KL to the reference, rollout mismatch correction,
and loss aggregation that is exact under gradient accumulation and data parallelism.

Per token t of response i (log-probs of the sampled token; A = advantage, broadcast):

    ρ      = exp(logp - old_logp)                       importance ratio, 1 on-policy
    pg     = max(-A ρ, -A clip(ρ, 1 - ε_low, 1 + ε_high))    PPO clipped surrogate (as a loss)
    pg     = min(pg, c |A|)        if dual clip and A < 0    (a bad token with a huge ratio
                                                              cannot dominate the update)
    loss_t = w · pg + β · KL_t - entropy_coef · H_t

``w`` is the rollout mismatch correction (see :func:`rollout_correction`): the tokens were
sampled by the rollout engine (vLLM, bf16, other kernels), whose log-probs differ slightly
from the trainer's ``old_logp`` of the same weights. Truncated importance sampling (TIS)
re-weights the policy term by w = min(π_old/π_rollout, C), detached; it multiplies the
policy term only (not the KL or entropy terms), as in veRL.

KL estimators, with x = ref_logp - logp = log(π_ref/π_θ) on a token sampled from π_θ:
k1 = -x, k2 = x²/2, k3 = e^x - x - 1 (unbiased, always >= 0; the paper's choice). Exactly
0 when logp == ref_logp, because x is then exactly 0.

Aggregation and why the denominator must be global
---------------------------------------------------
An optimiser step sees a batch split into micro-batches (gradient accumulation) and across
data-parallel ranks. A per-micro-batch mean -- sum(loss)/count(micro-batch) -- weights a token
in a short micro-batch more than one in a long micro-batch, so the accumulated gradient is
not the gradient of the batch loss and depends on how the batch happened to be split (and
on DP size). Instead every micro-batch divides its *sum* by the same global denominator D:

    token-mean                 D = # valid tokens in the step;  sum_{i,t} l_it / D
    seq-mean-token-mean        D = # responses with a valid token;  sum_i mean_t(l_it) / D
    seq-mean-token-sum         D = as above;                        sum_i sum_t(l_it) / D
    seq-mean-token-sum-norm    D = as above;                        sum_i sum_t(l_it) / (D · L)

(L = ``norm_len``, Dr. GRPO's constant max length; if every response has exactly L valid
tokens this mode equals token-mean. Fully masked responses, e.g. overlong-filtered ones,
neither contribute nor count.) D is computed once per optimiser step (one mini-batch when
``num_minibatches > 1``) by :func:`global_loss_denominator`, which counts over all
micro-batch masks of the step on this rank and all-reduces (SUM) the count over the
data-parallel group (the data-parallel-with-context-parallel group under CP). Then the sum
over micro-batches and ranks of :func:`aggregate_loss` is exactly the loss of the whole
batch, for any split.

Interaction with Megatron: with a loss function returning ``(loss, reporting_dict)`` and
``calculate_per_token_loss=False``, Megatron's schedule divides each micro-batch loss by
``num_microbatches`` and DDP averages gradients over the data-parallel(-context-parallel) group,
i.e. divides their sum by dp size (the schedule multiplies by cp size, DDP divides by dp·cp).
Multiply the micro-batch loss by :func:`r1mega.training.step.scale_for_megatron` (= num_microbatches · dp_size)
to undo both, so the final gradient is that of the global batch loss. Sequence-level modes
assume a sequence is not split across context-parallel ranks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional

import torch
import torch.distributed as dist

from r1mega.rl.config import KL_ESTIMATORS, LOSS_AGG_MODES, GRPOConfig


# ---------------------------------------------------------------------------- per-token terms


@dataclass
class Surrogate:
    """Per-token clipped surrogate loss ``[B, T]`` with the ratio and which clip was active."""

    loss: torch.Tensor
    ratio: torch.Tensor
    clipped_low: torch.Tensor
    """bool: A < 0 and ρ < 1 - ε_low (the gradient is cut)."""
    clipped_high: torch.Tensor
    """bool: A > 0 and ρ > 1 + ε_high (the gradient is cut)."""
    dual_clipped: torch.Tensor
    """bool: A < 0 and ρ > c (the dual clip caps the loss at c·|A|)."""


def clipped_surrogate(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    clip_low: float,
    clip_high: float,
    dual_clip: Optional[float] = None,
) -> Surrogate:
    """PPO/GRPO clipped surrogate as a per-token loss (to minimise); see module doc."""
    ratio = torch.exp(logp - old_logp.detach())
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - clip_low, 1.0 + clip_high)
    loss = torch.maximum(unclipped, clipped)
    with torch.no_grad():
        clipped_low = (advantages < 0) & (ratio < 1.0 - clip_low)
        clipped_high = (advantages > 0) & (ratio > 1.0 + clip_high)
        dual_clipped = torch.zeros_like(clipped_low)
    if dual_clip is not None:
        if dual_clip <= 1:
            raise ValueError(f"dual_clip must be > 1, got {dual_clip}")
        negative = advantages < 0
        loss = torch.where(negative, torch.minimum(loss, -advantages * dual_clip), loss)
        with torch.no_grad():
            dual_clipped = negative & (ratio > dual_clip)
    return Surrogate(loss, ratio, clipped_low, clipped_high, dual_clipped)


def kl_penalty(logp: torch.Tensor, ref_logp: torch.Tensor, estimator: str = "k3") -> torch.Tensor:
    """Per-token estimate of KL(π_θ || π_ref) from sampled-token log-probs (ref detached)."""
    log_ratio = logp - ref_logp.detach()  # log π_θ/π_ref = -x
    if estimator == "k1":
        return log_ratio
    if estimator == "k2":
        return 0.5 * log_ratio.square()
    if estimator == "k3":
        return torch.exp(-log_ratio) + log_ratio - 1.0
    raise ValueError(f"kl estimator must be one of {list(KL_ESTIMATORS)}, got {estimator!r}")


# --------------------------------------------------------------- rollout mismatch correction


@dataclass
class RolloutCorrection:
    """Result of :func:`rollout_correction`: detached weights (None = 1), the loss mask to use
    from now on (also for the global denominator), and mismatch metrics."""

    weights: Optional[torch.Tensor]
    mask: torch.Tensor
    metrics: dict[str, torch.Tensor]


def rollout_correction(
    old_logp: torch.Tensor,
    rollout_logp: torch.Tensor,
    mask: torch.Tensor,
    mode: str = "tis",
    cap: float = 2.0,
) -> RolloutCorrection:
    """Correct for the rollout engine / trainer log-prob mismatch, per token.

    ρ_r = π_old/π_rollout = exp(old_logp - rollout_logp) (trainer's recomputed log-probs over
    the engine's). ``"tis"``: weights min(ρ_r, cap). ``"mask"``: drop tokens with ρ_r outside
    [1/cap, cap] from the mask (pure rejection, weights 1). ``"none"``: metrics only.

    Call once per rollout batch, *before* :func:`global_loss_denominator`, since "mask" changes
    which tokens count. Metrics are means over the incoming valid tokens: ``mismatch/kl_k1`` =
    E[rollout - old] and ``mismatch/kl_k3`` = E[ρ_r - log ρ_r - 1] (both estimate
    KL(π_rollout || π_old) on rollout samples), ``mismatch/ratio_max`` and
    ``mismatch/corrected_frac`` (truncated or masked tokens).
    """
    if mode not in ("none", "tis", "mask"):
        raise ValueError(f"rollout correction must be 'none', 'tis' or 'mask', got {mode!r}")
    if cap <= 1:
        raise ValueError(f"rollout IS cap must be > 1, got {cap}")
    with torch.no_grad():
        valid = mask.bool()
        log_ratio = old_logp.detach() - rollout_logp.detach()
        ratio = torch.exp(log_ratio)
        weights, new_mask, corrected = None, mask, torch.zeros_like(valid)
        if mode == "tis":
            weights = torch.where(valid, ratio.clamp(max=cap), torch.ones_like(ratio))
            corrected = ratio > cap
        elif mode == "mask":
            corrected = (ratio > cap) | (ratio < 1.0 / cap)
            new_mask = mask * (~corrected).to(mask.dtype)
        metrics = {
            "mismatch/kl_k1": masked_mean(-log_ratio, valid),
            "mismatch/kl_k3": masked_mean(ratio - log_ratio - 1.0, valid),
            "mismatch/ratio_max": masked_max(ratio, valid),
            "mismatch/corrected_frac": masked_mean(corrected.to(ratio.dtype), valid),
        }
    return RolloutCorrection(weights, new_mask, metrics)


# ----------------------------------------------------------------------------- the GRPO loss


def grpo_token_loss(
    cfg: GRPOConfig,
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    ref_logp: Optional[torch.Tensor] = None,
    entropy: Optional[torch.Tensor] = None,
    is_weights: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-token GRPO loss ``[B, T]`` and micro-batch metrics (masked by ``mask``); padded
    positions get a harmless finite value (ratio 1, KL 0) that aggregation then drops.

    ``advantages`` is ``[B]`` (per response) or ``[B, T]``. ``ref_logp`` is required when
    ``cfg.kl_in_loss``; ``entropy`` when ``cfg.entropy_coef > 0`` (or to log it).
    """
    if advantages.dim() == 1:
        advantages = advantages[:, None].expand_as(logp)
    if not (logp.shape == old_logp.shape == advantages.shape == mask.shape):
        raise ValueError(
            f"shape mismatch: logp {tuple(logp.shape)}, old_logp {tuple(old_logp.shape)}, "
            f"advantages {tuple(advantages.shape)}, mask {tuple(mask.shape)}"
        )
    if cfg.kl_in_loss and ref_logp is None:
        raise ValueError("rl.kl_beta > 0 with the KL in the loss needs ref_logp")
    if cfg.entropy_coef > 0 and entropy is None:
        raise ValueError("rl.entropy_coef > 0 needs the per-token entropy")
    valid = mask.bool()
    old_logp = _neutral_at_padding(old_logp, logp, valid)
    sur = clipped_surrogate(logp, old_logp, advantages.detach(), cfg.clip_low, cfg.clip_high, cfg.dual_clip)
    loss = sur.loss
    if is_weights is not None:
        loss = loss * torch.where(valid, is_weights.detach(), torch.ones_like(is_weights))
    kl = None
    if cfg.kl_in_loss:
        kl = kl_penalty(logp, _neutral_at_padding(ref_logp, logp, valid), cfg.kl_estimator)
        loss = loss + cfg.kl_beta * kl
    if cfg.entropy_coef > 0:
        loss = loss - cfg.entropy_coef * entropy
    return loss, _token_metrics(sur, mask, kl, entropy)


def _neutral_at_padding(other: torch.Tensor, logp: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``other`` (detached) on valid tokens, ``logp`` (detached) on padding: ratio 1 and KL 0
    there, so junk in padded positions (e.g. -1e9 from an engine) can never overflow into
    inf·0 = NaN gradients, even though the aggregation masks those positions anyway."""
    return torch.where(valid, other.detach(), logp.detach())


def _token_metrics(sur: Surrogate, mask, kl, entropy) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        valid = mask.bool()
        ratio = sur.ratio.detach()
        log_ratio = torch.log(ratio)
        metrics = {
            "actor/pg_loss": masked_mean(sur.loss.detach(), valid),
            "actor/clip_frac_low": masked_mean(sur.clipped_low.to(ratio.dtype), valid),
            "actor/clip_frac_high": masked_mean(sur.clipped_high.to(ratio.dtype), valid),
            "actor/dual_clip_frac": masked_mean(sur.dual_clipped.to(ratio.dtype), valid),
            "actor/ratio_mean": masked_mean(ratio, valid),
            "actor/ratio_max": masked_max(ratio, valid),
            "actor/approx_kl": masked_mean(ratio - 1.0 - log_ratio, valid),  # k3 of KL(old||θ)
            "actor/num_tokens": valid.sum().to(ratio.dtype),
        }
        if kl is not None:
            metrics["actor/ref_kl"] = masked_mean(kl.detach(), valid)
        if entropy is not None:
            metrics["actor/entropy"] = masked_mean(entropy.detach(), valid)
    return metrics


def grpo_microbatch_loss(
    cfg: GRPOConfig,
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    global_denominator: int,
    ref_logp: Optional[torch.Tensor] = None,
    entropy: Optional[torch.Tensor] = None,
    is_weights: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """This micro-batch's share of the step's GRPO loss: :func:`grpo_token_loss` then
    :func:`aggregate_loss` with ``cfg.loss_agg``. Sum over micro-batches and DP ranks = batch loss."""
    token_loss, metrics = grpo_token_loss(
        cfg, logp, old_logp, advantages, mask, ref_logp, entropy, is_weights
    )
    loss = aggregate_loss(token_loss, mask, cfg.loss_agg, global_denominator, cfg.loss_agg_norm_len)
    return loss, metrics


# ------------------------------------------------------------------------------- aggregation


def local_denominator(mask: torch.Tensor, mode: str) -> int:
    """This micro-batch's count for ``mode``: valid tokens, or sequences with a valid token."""
    _check_mode(mode)
    valid = mask.bool()
    if mode == "token-mean":
        return int(valid.sum())
    return int(valid.any(dim=-1).sum())


def global_loss_denominator(
    masks: Iterable[torch.Tensor], mode: str, group: Optional[dist.ProcessGroup] = None
) -> int:
    """D for one optimiser step: counts over all micro-batch ``masks`` of this rank, summed over
    ``group`` (the data-parallel group; None = this process only). Collective when ``group``
    is given: every rank of it must call it. int64 counts, exact for any batch size."""
    total = sum(local_denominator(m, mode) for m in masks)
    if group is None:
        return total
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend(group) == "nccl" else "cpu"
    count = torch.tensor([total], dtype=torch.int64, device=device)
    dist.all_reduce(count, op=dist.ReduceOp.SUM, group=group)
    return int(count.item())


def aggregate_loss(
    token_loss: torch.Tensor,
    mask: torch.Tensor,
    mode: str,
    global_denominator: int,
    norm_len: Optional[int] = None,
) -> torch.Tensor:
    """Sum of this micro-batch's terms of the global mean (module doc), over ``global_denominator``.

    Masked positions are ignored even if they hold inf/NaN. A denominator of 0 (nothing valid
    anywhere) gives a zero loss that still has a graph.
    """
    _check_mode(mode)
    if token_loss.shape != mask.shape or token_loss.dim() != 2:
        raise ValueError(
            f"need token_loss and mask [B, T], got {tuple(token_loss.shape)}, {tuple(mask.shape)}"
        )
    valid = mask.bool()
    masked = torch.where(valid, token_loss, torch.zeros_like(token_loss))
    denominator = max(int(global_denominator), 1)
    if mode == "token-mean":
        return masked.sum() / denominator
    seq_sum = masked.sum(dim=-1)
    if mode == "seq-mean-token-mean":
        return (seq_sum / valid.sum(dim=-1).clamp(min=1)).sum() / denominator
    if mode == "seq-mean-token-sum":
        return seq_sum.sum() / denominator
    if norm_len is None or norm_len <= 0:
        raise ValueError(
            f"loss_agg={mode!r} needs a positive norm_len (rl.loss_agg_norm_len), got {norm_len}"
        )
    return seq_sum.sum() / (denominator * norm_len)


def _check_mode(mode: str) -> None:
    if mode not in LOSS_AGG_MODES:
        raise ValueError(f"loss aggregation must be one of {list(LOSS_AGG_MODES)}, got {mode!r}")


# ----------------------------------------------------------------------------------- metrics


def masked_mean(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over ``valid`` positions (0 if none), ignoring values elsewhere."""
    total = torch.where(valid, x, torch.zeros_like(x)).sum()
    return total / valid.sum().clamp(min=1).to(x.dtype)


def masked_max(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Max of ``x`` over ``valid`` positions (0 if none)."""
    if not bool(valid.any()):
        return x.new_zeros(())
    return torch.where(valid, x, torch.full_like(x, -torch.inf)).max()
