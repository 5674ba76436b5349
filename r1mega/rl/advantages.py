"""Group-relative advantages and reward shaping for GRPO.

GRPO has no critic. For each prompt it samples a *group* of G responses, scores each with a
scalar reward r_i, and uses the group itself as the baseline:

* ``"grpo"`` (DeepSeekMath / R1):   A_i = (r_i - mean(r)) / (std(r) + eps)
* ``"grpo_no_std"`` (Dr. GRPO):     A_i =  r_i - mean(r)
  Dividing by the std up-weights groups that are almost all right or almost all wrong
  ("question difficulty bias"); Dr. GRPO drops it.
* ``"rloo"`` (leave-one-out):       A_i =  r_i - mean_{j != i}(r_j) = G/(G-1) · (r_i - mean(r))
  The baseline excludes the sample it scores, which makes it independent of that sample and
  the policy-gradient estimate unbiased.

``std`` is the unbiased (G - 1) sample std, as in veRL and NeMo-RL. A group whose rewards are
all equal carries no learning signal: every estimator gives exactly 0 for it (set explicitly,
so that floating-point round-off in the mean can never leak a tiny non-zero advantage and
0/0 can never produce NaN).

Layout: rewards are a flat ``[num_prompts * G]`` tensor grouped contiguously
(``r[p*G:(p+1)*G]`` are prompt p's responses). The sequence-level advantage is then
broadcast to every response token through the loss mask.

Also here, the two reward-side options of the recipe:

* KL in the reward (:func:`kl_penalized_rewards`): r_i <- r_i - β Σ_t KL_t, applied *before*
  the advantages, as an alternative to the β·KL loss term.
* DAPO's soft overlong penalty (:func:`overlong_penalty`) and overlong filtering
  (:func:`overlong_filter_mask`) for responses cut at the length limit.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

ESTIMATORS = ("grpo", "grpo_no_std", "rloo")


@dataclass
class GroupStats:
    """Per-group statistics of the rewards, each ``[num_prompts]``, for logging and filtering."""

    mean: torch.Tensor
    std: torch.Tensor
    constant: torch.Tensor
    """bool: all rewards of the group are equal (advantage 0, no gradient)."""


def group_rewards(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """Reshape flat ``[num_prompts * G]`` rewards to ``[num_prompts, G]`` (ValueError if ragged)."""
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be 1-D [num_prompts * group_size], got shape {tuple(rewards.shape)}")
    if group_size < 1 or rewards.numel() % group_size != 0:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    return rewards.view(-1, group_size)


def constant_groups(grouped: torch.Tensor) -> torch.Tensor:
    """``[P]`` bool: groups (rows of ``[P, G]``) whose rewards are all exactly equal."""
    return grouped.amax(dim=1) == grouped.amin(dim=1)


def compute_advantages(
    rewards: torch.Tensor, group_size: int, estimator: str = "grpo", eps: float = 1e-6
) -> tuple[torch.Tensor, GroupStats]:
    """Sequence-level advantages ``[num_prompts * G]`` and per-group stats (see module doc).

    Computed in at least fp32 (fp64 input stays fp64); constant groups get exactly 0.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"advantage estimator must be one of {list(ESTIMATORS)}, got {estimator!r}")
    if group_size < 2:
        raise ValueError(f"group-relative advantages need group_size >= 2, got {group_size}")
    grouped = group_rewards(rewards, group_size).to(torch.promote_types(rewards.dtype, torch.float32))
    mean = grouped.mean(dim=1, keepdim=True)
    std = grouped.std(dim=1, keepdim=True)  # unbiased, G - 1
    if estimator == "grpo":
        adv = (grouped - mean) / (std + eps)
    elif estimator == "grpo_no_std":
        adv = grouped - mean
    else:
        leave_one_out = (grouped.sum(dim=1, keepdim=True) - grouped) / (group_size - 1)
        adv = grouped - leave_one_out
    constant = constant_groups(grouped)
    adv = torch.where(constant[:, None], torch.zeros_like(adv), adv)
    stats = GroupStats(mean=mean.squeeze(1), std=std.squeeze(1), constant=constant)
    return adv.reshape(-1), stats


def kl_penalized_rewards(
    rewards: torch.Tensor, kl_per_token: torch.Tensor, mask: torch.Tensor, beta: float
) -> torch.Tensor:
    """KL-in-reward: r_i - β · Σ_t mask_it · KL_it, for ``[B]`` rewards and ``[B, T]`` KL/mask.

    Equivalent to veRL's token-level reward r_t = score·[t = last] - β KL_t summed over the
    response, which is what its GRPO estimator reads. The KL is treated as data (detached).
    """
    if kl_per_token.shape != mask.shape or kl_per_token.shape[0] != rewards.shape[0]:
        raise ValueError(
            f"need rewards [B], kl/mask [B, T]; got {tuple(rewards.shape)}, "
            f"{tuple(kl_per_token.shape)}, {tuple(mask.shape)}"
        )
    return rewards - beta * kl_sums(kl_per_token, mask).to(rewards.dtype)


def kl_sums(kl_per_token: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Σ_t mask_it · KL_it per response ``[B]`` (the KL treated as data: detached)."""
    return (kl_per_token.detach() * mask.to(kl_per_token.dtype)).sum(dim=1)


def overlong_penalty(
    response_lengths: torch.Tensor, max_len: int, buffer_len: int, penalty_factor: float = 1.0
) -> torch.Tensor:
    """DAPO soft overlong punishment, to be *added* to the rewards.

    With L_max = ``max_len`` and L_cache = ``buffer_len``::

        0                                        if |y| <= L_max - L_cache
        -factor · (|y| - (L_max - L_cache)) / L_cache   if L_max - L_cache < |y| <= L_max
        -factor                                  if |y| > L_max

    i.e. a linear ramp over the last ``buffer_len`` tokens, so responses are discouraged from
    approaching the cut-off before being truncated.
    """
    if not 0 < buffer_len <= max_len:
        raise ValueError(f"need 0 < buffer_len <= max_len, got buffer_len={buffer_len}, max_len={max_len}")
    lengths = response_lengths.to(torch.float64)
    excess = (lengths - (max_len - buffer_len)).clamp(min=0.0, max=float(buffer_len))
    return (-penalty_factor * excess / buffer_len).to(torch.get_default_dtype())


def overlong_filter_mask(mask: torch.Tensor, truncated: torch.Tensor) -> torch.Tensor:
    """DAPO overlong filtering: zero the loss mask ``[B, T]`` of truncated responses (``[B]`` bool).

    The truncated responses still count in their group's reward statistics; they only stop
    contributing gradient (and, through the mask, to the global loss denominator).
    """
    if truncated.shape != mask.shape[:1]:
        raise ValueError(f"truncated must be [B] for mask [B, T], got {tuple(truncated.shape)}")
    return mask * (~truncated.bool())[:, None].to(mask.dtype)
