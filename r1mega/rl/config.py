"""Typed configuration of the GRPO objective (the ``rl.*`` keys).

One flat dataclass holds every knob of the loss and of the advantage/reward shaping that the
training loop needs; the maths lives in :mod:`r1mega.rl.advantages`, :mod:`r1mega.rl.losses`
and :mod:`r1mega.rl.logprobs`, which take plain arguments so they can be tested in isolation.

Defaults follow what veRL / NeMo-RL users expect for "vanilla" GRPO as in DeepSeek-R1:
symmetric clipping at 0.2, k3 KL to the reference in the loss with β = 0.001, std-normalised
group advantages, token-mean aggregation, one update per rollout batch, no DAPO extras. The
DAPO / Dr.GRPO / mismatch-correction variants are switched on field by field.

``validate()`` raises :class:`~r1mega.config.errors.ConfigError` (a ValueError) naming the offending key as ``rl.<field>`` so a Hydra
user sees exactly which override is wrong.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from r1mega.config.errors import ConfigError

ADV_ESTIMATORS = ("grpo", "grpo_no_std", "rloo")
KL_ESTIMATORS = ("k1", "k2", "k3")
LOSS_AGG_MODES = (
    "token-mean",
    "seq-mean-token-mean",
    "seq-mean-token-sum",
    "seq-mean-token-sum-norm",
)
OVERLONG_MODES = ("none", "mask", "penalty")
ROLLOUT_IS_MODES = ("none", "tis", "mask")


@dataclass
class GRPOConfig:
    """Hyper-parameters of the GRPO objective. See the module docstring."""

    group_size: int = 8
    """G: responses sampled per prompt. Rewards arrive grouped contiguously, G per prompt."""

    adv_estimator: str = "grpo"
    """"grpo": (r - mean)/(std + eps) (the paper); "grpo_no_std": r - mean (Dr. GRPO);
    "rloo": r_i - mean of the other G-1 rewards (leave-one-out baseline)."""

    adv_eps: float = 1e-6
    """eps added to the (unbiased) group std in the "grpo" estimator."""

    clip_low: float = 0.2
    """ε_low: the ratio is clipped below at 1 - ε_low (acts on negative advantages)."""

    clip_high: float = 0.2
    """ε_high: the ratio is clipped above at 1 + ε_high; > ε_low is DAPO "clip-higher" (0.28)."""

    dual_clip: Optional[float] = None
    """None, or c > 1: for negative advantages the per-token loss is capped at c·|A| (dual-clip
    PPO), so a huge ratio on a bad token cannot blow the update up. veRL uses 3.0."""

    kl_beta: float = 0.001
    """β of the KL penalty to the frozen reference policy. 0 disables it and skips the
    reference forward pass entirely (see :attr:`needs_reference`)."""

    kl_estimator: str = "k3"
    """Per-token KL estimator: "k1" log-ratio, "k2" half squared log-ratio, "k3" the unbiased
    low-variance exp(ref - logp) - (ref - logp) - 1 (the paper's choice)."""

    kl_in_reward: bool = False
    """True: subtract β·Σ_t KL_t from each response's reward before computing advantages,
    instead of adding β·KL as a loss term."""

    loss_agg: str = "token-mean"
    """How per-token losses become a scalar, over the *whole* optimiser step (all micro-batches
    and data-parallel ranks): "token-mean" (DAPO), "seq-mean-token-mean" (the GRPO paper),
    "seq-mean-token-sum", "seq-mean-token-sum-norm" (Dr. GRPO: token sums divided by the
    constant :attr:`loss_agg_norm_len`)."""

    loss_agg_norm_len: Optional[int] = None
    """The constant length divisor of "seq-mean-token-sum-norm", normally the maximum response
    length. Required for that mode, ignored otherwise."""

    dynamic_sampling: bool = False
    """DAPO dynamic sampling: drop groups whose rewards are all equal (zero advantage, no
    gradient) and sample more prompts until the batch is full again."""

    max_dynamic_sampling_rounds: int = 10
    """Generation rounds (each one step's worth of prompts) allowed to fill one batch under
    dynamic sampling."""

    off_policy_steps: int = 0
    """0: each step trains on samples from its own weights. 1: the batch of step t+1 is
    generated with the weights of step t while step t trains (concurrently when vLLM has its own
    GPUs); the old policy is recomputed and ``rollout_is_correction`` weighs it against the
    sampling policy (see r1mega/rl/off_policy.py)."""

    dynamic_sampling_exhausted: str = "keep"
    """Dynamic sampling, when the rounds run out before the batch is full: "keep" trains on the
    informative groups found (whole micro-batches per rank), "pad" fills the batch with dropped
    (zero-advantage) groups, as veRL does."""

    overlong: str = "none"
    """Responses cut at the length limit: "none" treats them like any other; "mask" removes
    them from the loss (DAPO overlong filtering); "penalty" adds the DAPO soft overlong
    penalty to the reward."""

    overlong_buffer_len: int = 4096
    """DAPO soft-penalty buffer: the penalty ramps linearly from 0 at max_len - buffer to
    -overlong_penalty_factor at max_len."""

    overlong_penalty_factor: float = 1.0
    """Magnitude of the soft overlong penalty at the length limit."""

    rollout_is_correction: str = "none"
    """Correct for rollout-engine vs trainer log-prob mismatch: "none"; "tis" multiplies the
    policy loss by min(π_trainer/π_rollout, cap) (truncated importance sampling); "mask" drops
    tokens whose ratio lies outside [1/cap, cap]."""

    rollout_is_cap: float = 2.0
    """The truncation / rejection threshold C of :attr:`rollout_is_correction` (> 1)."""

    entropy_coef: float = 0.0
    """Weight of the entropy bonus (the per-token loss gets - coef · H_t). 0 disables it."""

    ppo_epochs: int = 1
    """Passes over each rollout batch."""

    num_minibatches: int = 1
    """Optimiser steps per pass: the rollout batch is split into this many mini-batches.
    1 epoch x 1 mini-batch is strictly on-policy (ratio exactly 1)."""

    record_dir: Optional[str] = None
    """Write every step's rollout batch (prompts, responses, rollout log-probs, raw rewards)
    to DIR/step_NNNNNN.json (see r1mega.rl.replay)."""

    replay_dir: Optional[str] = None
    """Read each step's rollout batch from DIR (written by record_dir) instead of generating
    and scoring; runs at different layouts then train on identical data."""

    @property
    def needs_reference(self) -> bool:
        """Whether a reference-policy forward pass is needed (β > 0, in loss or in reward)."""
        return self.kl_beta > 0

    @property
    def updates(self) -> int:
        """Optimizer steps per rollout batch (``ppo_epochs x num_minibatches``)."""
        return self.ppo_epochs * self.num_minibatches

    @property
    def needs_old_logp(self) -> bool:
        """Whether the old policy's log-probs need their own forward pass: several updates per
        batch, the mismatch correction, KL in the reward, or off-policy samples. Otherwise the
        training forward's detached log-probs are the old policy's."""
        return (self.updates > 1 or self.rollout_is_correction != "none" or self.kl_in_reward
                or self.off_policy_steps > 0)

    @property
    def kl_in_loss(self) -> bool:
        """Whether the loss carries a β·KL term (as opposed to the reward, or nowhere)."""
        return self.kl_beta > 0 and not self.kl_in_reward

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "GRPOConfig":
        """Build and validate from a mapping (e.g. the ``rl`` node of a Hydra config)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown GRPO option(s): {', '.join('rl.' + k for k in unknown)}")
        cfg = cls(**dict(values))
        cfg.validate()
        return cfg

    def validate(self) -> "GRPOConfig":
        """Raise ConfigError naming the first invalid field; return self when all are valid."""
        _check(isinstance(self.group_size, int) and self.group_size >= 2, "group_size",
               f"must be an int >= 2 (group-relative advantages need a group), got {self.group_size!r}")
        _check_choice(self.adv_estimator, ADV_ESTIMATORS, "adv_estimator")
        _check(self.adv_eps >= 0, "adv_eps", f"must be >= 0, got {self.adv_eps}")
        _check(0 <= self.clip_low < 1, "clip_low", f"must be in [0, 1), got {self.clip_low}")
        _check(self.clip_high >= 0, "clip_high", f"must be >= 0, got {self.clip_high}")
        _check(self.dual_clip is None or self.dual_clip > 1, "dual_clip",
               f"must be None or > 1, got {self.dual_clip}")
        _check(self.kl_beta >= 0, "kl_beta", f"must be >= 0, got {self.kl_beta}")
        _check_choice(self.kl_estimator, KL_ESTIMATORS, "kl_estimator")
        _check_choice(self.loss_agg, LOSS_AGG_MODES, "loss_agg")
        if self.loss_agg == "seq-mean-token-sum-norm":
            _check(isinstance(self.loss_agg_norm_len, int) and self.loss_agg_norm_len > 0,
                   "loss_agg_norm_len",
                   f"must be a positive int for loss_agg={self.loss_agg!r}, got {self.loss_agg_norm_len!r}")
        _check(self.max_dynamic_sampling_rounds >= 1, "max_dynamic_sampling_rounds",
               f"must be >= 1, got {self.max_dynamic_sampling_rounds}")
        _check_choice(self.dynamic_sampling_exhausted, ("keep", "pad"), "dynamic_sampling_exhausted")
        _check(self.off_policy_steps in (0, 1), "off_policy_steps", f"must be 0 or 1, got {self.off_policy_steps}")
        _check_choice(self.overlong, OVERLONG_MODES, "overlong")
        _check(self.overlong_buffer_len > 0, "overlong_buffer_len",
               f"must be > 0, got {self.overlong_buffer_len}")
        _check(self.overlong_penalty_factor >= 0, "overlong_penalty_factor",
               f"must be >= 0, got {self.overlong_penalty_factor}")
        _check_choice(self.rollout_is_correction, ROLLOUT_IS_MODES, "rollout_is_correction")
        _check(self.rollout_is_cap > 1, "rollout_is_cap", f"must be > 1, got {self.rollout_is_cap}")
        _check(self.entropy_coef >= 0, "entropy_coef", f"must be >= 0, got {self.entropy_coef}")
        _check(isinstance(self.ppo_epochs, int) and self.ppo_epochs >= 1, "ppo_epochs",
               f"must be an int >= 1, got {self.ppo_epochs!r}")
        _check(isinstance(self.num_minibatches, int) and self.num_minibatches >= 1,
               "num_minibatches", f"must be an int >= 1, got {self.num_minibatches!r}")
        if self.record_dir and self.replay_dir:
            raise ConfigError("rl.record_dir and rl.replay_dir are exclusive (got both)")
        return self


def _check(ok: bool, field: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"rl.{field} {message}")


def _check_choice(value: str, choices: tuple, field: str) -> None:
    _check(value in choices, field, f"must be one of {list(choices)}, got {value!r}")
