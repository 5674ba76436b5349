"""The RL batch as one typed object, from generations to training micro-batches.

A row is ``prompt + response``; position ``j`` predicts token ``j + 1``, so the response tokens
``seq[P:]`` are predicted at positions ``P-1 .. P+R-2`` and those positions form the loss mask.
Per-token tensors (rollout log-probs, old/reference log-probs, IS weights) live on the same
positions, so every quantity the loss needs is a ``[N, L]`` tensor masked by the same ``mask``.

A :class:`RolloutBatch` is filled phase by phase: the rollout source sets tokens, rewards and
components; shaping edits rewards and mask; the log-prob pass sets ``old_logp`` / ``ref_logp``;
the mismatch correction sets ``is_weights``; the advantage estimator sets ``advantages``. The
update cuts it into :class:`MicroBatch` es, one per forward of Megatron's schedule.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Optional

import torch
import torch.distributed as dist

from r1mega.rollout.base import Generation


@dataclass
class MicroBatch:
    """Rows of a :class:`RolloutBatch` as one forward's inputs (``[b, L]`` tensors, ``[b]``
    advantages); optional fields are None when the step does not use them."""

    tokens: torch.Tensor
    labels: torch.Tensor
    mask: torch.Tensor
    position_ids: torch.Tensor
    rollout_logp: torch.Tensor
    advantages: Optional[torch.Tensor] = None
    old_logp: Optional[torch.Tensor] = None
    ref_logp: Optional[torch.Tensor] = None
    is_weights: Optional[torch.Tensor] = None

    def to(self, device) -> "MicroBatch":
        return MicroBatch(**{f.name: None if getattr(self, f.name) is None else getattr(self, f.name).to(device)
                             for f in fields(self)})


@dataclass
class RolloutBatch:
    """One RL step's rollout batch on this rank (its prompts x G responses), padded to one
    row length.

    tokens, labels, mask, rollout_logp: ``[N, L]`` (mask 1.0 on response positions);
    truncated, lengths: ``[N]``; rewards ``[N]`` and reward ``components`` (name -> ``[N]``)
    as scored, then shaped. ``sample_ids`` is the step's *global* batch of dataset rows,
    ``prompts`` this rank's encoded prompts and ``generations`` the engine's output, kept for
    recording and metrics. ``timings`` holds the source's phase times (seconds) and
    ``source_metrics`` what the source reports about itself (e.g. dynamic sampling)."""

    tokens: torch.Tensor
    labels: torch.Tensor
    mask: torch.Tensor
    rollout_logp: torch.Tensor
    truncated: torch.Tensor
    lengths: torch.Tensor
    rewards: torch.Tensor
    components: dict
    sample_ids: list = field(default_factory=list)
    prompts: list = field(default_factory=list)
    generations: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    source_metrics: dict = field(default_factory=dict)
    old_logp: Optional[torch.Tensor] = None
    ref_logp: Optional[torch.Tensor] = None
    is_weights: Optional[torch.Tensor] = None
    advantages: Optional[torch.Tensor] = None

    def __len__(self) -> int:
        return self.tokens.shape[0]

    @property
    def seq_length(self) -> int:
        return self.tokens.shape[1]

    @classmethod
    def from_generations(cls, generations: list[Generation], rewards: torch.Tensor, components: dict,
                         pad_id: int, length: int, **meta) -> "RolloutBatch":
        """Tensors for ``generations`` padded to ``length`` positions (see :func:`agreed_length`)."""
        rows = [list(g.prompt_ids) + list(g.token_ids) for g in generations]
        longest = max(len(r) for r in rows) - 1
        if longest > length:
            raise ValueError(f"a rollout of {longest + 1} tokens exceeds data.seq_length={length}")
        n = len(rows)
        tokens = torch.full((n, length), pad_id, dtype=torch.long)
        labels = torch.full((n, length), pad_id, dtype=torch.long)
        mask = torch.zeros(n, length)
        rollout_logp = torch.zeros(n, length)
        for i, (row, g) in enumerate(zip(rows, generations)):
            p, r = len(g.prompt_ids), len(g.token_ids)
            tokens[i, : len(row) - 1] = torch.tensor(row[:-1])
            labels[i, : len(row) - 1] = torch.tensor(row[1:])
            mask[i, p - 1 : p - 1 + r] = 1.0
            rollout_logp[i, p - 1 : p - 1 + r] = torch.tensor(g.logprobs, dtype=torch.float32)
        truncated = torch.tensor([g.truncated for g in generations])
        lengths = torch.tensor([len(g.token_ids) for g in generations])
        return cls(tokens, labels, mask, rollout_logp, truncated, lengths, rewards, components,
                   generations=list(generations), **meta)

    def micro_batches(self, rows: list[int], size: int) -> list[MicroBatch]:
        """The rows ``rows``, ``size`` rows per micro-batch, with every per-token and per-row
        quantity the step has computed so far."""
        out = []
        for j in range(0, len(rows), size):
            idx = torch.tensor(rows[j : j + size])
            pick = lambda t: None if t is None else t[idx]  # noqa: E731
            tokens = self.tokens[idx]
            out.append(MicroBatch(
                tokens, self.labels[idx], self.mask[idx],
                torch.arange(tokens.shape[1]).expand_as(tokens).contiguous(), self.rollout_logp[idx],
                advantages=pick(self.advantages), old_logp=pick(self.old_logp), ref_logp=pick(self.ref_logp),
                is_weights=pick(self.is_weights),
            ))
        return out


def agreed_length(generations: list, multiple: int = 16) -> int:
    """Row length for this step on every rank: the longest ``prompt + response - 1`` over all
    ranks (an all-reduce when distributed), rounded up to ``multiple``. One row length on every
    rank: pipeline stages exchange ``[length, mbs, hidden]`` tensors, and results do not depend
    on the DP size."""
    longest = max(len(g.prompt_ids) + len(g.token_ids) for g in generations) - 1
    if dist.is_initialized() and dist.get_world_size() > 1:
        device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else None
        t = torch.tensor([longest], device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        longest = int(t.item())
    return (longest + multiple - 1) // multiple * multiple
