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

import dataclasses
from dataclasses import dataclass, field, fields
from typing import Optional

import torch
import torch.distributed as dist

from r1mega.device import cuda_device_or_none
from r1mega.rollout.base import Generation


@dataclass
class MicroBatch:
    """Rows of a :class:`RolloutBatch` as one forward's inputs.

    Padded: ``tokens``, ``labels``, ``position_ids`` are ``[b, L]``. Packed (THD): they are
    ``[1, T]``, the rows one after another, ``cu_seqlens`` ``[b + 1]`` marks where each row (and
    a padding tail, if any) starts, and ``row_index`` ``[b, L]`` maps each row position to its
    packed position. Either way the loss-side tensors (``mask``, ``rollout_logp``, the optional
    ``old_logp``, ``ref_logp``, ``is_weights``) are ``[b, L]`` rows and ``advantages`` ``[b]``;
    optional fields are None when the step does not use them."""

    tokens: torch.Tensor
    labels: torch.Tensor
    mask: torch.Tensor
    position_ids: torch.Tensor
    rollout_logp: torch.Tensor
    advantages: Optional[torch.Tensor] = None
    old_logp: Optional[torch.Tensor] = None
    ref_logp: Optional[torch.Tensor] = None
    is_weights: Optional[torch.Tensor] = None
    cu_seqlens: Optional[torch.Tensor] = None
    row_index: Optional[torch.Tensor] = None

    @property
    def packed(self) -> bool:
        return self.cu_seqlens is not None

    @property
    def seq_length(self) -> int:
        return self.tokens.shape[1]

    def packed_seq_params(self):
        """Megatron ``PackedSeqParams`` (THD) of a packed micro-batch, else None."""
        if self.cu_seqlens is None:
            return None
        from megatron.core.packed_seq_params import PackedSeqParams

        longest = int((self.cu_seqlens[1:] - self.cu_seqlens[:-1]).max())
        return PackedSeqParams(qkv_format="thd", cu_seqlens_q=self.cu_seqlens, cu_seqlens_kv=self.cu_seqlens,
                               max_seqlen_q=longest, max_seqlen_kv=longest)

    def unpack(self, packed: torch.Tensor) -> torch.Tensor:
        """``[1, T]`` per-token values (a packed forward's) as ``[b, L]`` rows; padded
        micro-batches are returned as they are."""
        return packed if self.row_index is None else packed[0][self.row_index]

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
    ``source_metrics`` what the source reports about itself (e.g. dynamic sampling).
    ``row_lengths`` ``[N]`` counts the positions a row uses (prompt + response - 1), and
    ``versions`` ``[N]`` the RL step whose weights generated each row (the step itself when
    on-policy, one less with one-step off-policy rollouts).

    After :meth:`gathered` the batch holds every data-parallel rank's rows, and ``owned`` lists
    the rows this rank runs the log-prob passes and the update on (see :mod:`r1mega.rl.packing`);
    rewards, advantages and metrics are then computed over the whole batch on every rank."""

    tokens: torch.Tensor
    labels: torch.Tensor
    mask: torch.Tensor
    rollout_logp: torch.Tensor
    truncated: torch.Tensor
    lengths: torch.Tensor
    row_lengths: torch.Tensor
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
    versions: Optional[torch.Tensor] = None
    owned: Optional[list] = None

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
        row_lengths = torch.tensor([len(r) - 1 for r in rows])
        return cls(tokens, labels, mask, rollout_logp, truncated, lengths, row_lengths, rewards, components,
                   generations=list(generations), **meta)

    def owned_rows(self) -> list[int]:
        return list(range(len(self))) if self.owned is None else list(self.owned)

    def gathered(self, group) -> "RolloutBatch":
        """The batch of every rank of the data-parallel ``group`` (rows in rank order), owning
        this rank's own rows. A no-op for one rank. Every rank must have as many rows, padded
        to the same length (:func:`agreed_length`)."""
        if not dist.is_initialized() or dist.get_world_size(group) == 1:
            return self
        size, rank = dist.get_world_size(group), dist.get_rank(group)
        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend(group) == "nccl" else None

        def cat(t: torch.Tensor) -> torch.Tensor:
            parts = [torch.empty_like(t, device=device) for _ in range(size)]
            dist.all_gather(parts, t.to(device), group=group)
            return torch.cat(parts).to(t.device)

        comps = [None] * size
        dist.all_gather_object(comps, self.components, group=group)
        shared = set.intersection(*(set(c) for c in comps))
        n = len(self)
        return dataclasses.replace(
            self, tokens=cat(self.tokens), labels=cat(self.labels), mask=cat(self.mask),
            rollout_logp=cat(self.rollout_logp), truncated=cat(self.truncated), lengths=cat(self.lengths),
            row_lengths=cat(self.row_lengths), rewards=cat(self.rewards),
            versions=None if self.versions is None else cat(self.versions),
            components={k: torch.cat([c[k] for c in comps]) for k in sorted(shared)},
            owned=list(range(rank * n, (rank + 1) * n)))

    def packed_micro_batch(self, rows: list[int], pad_id: int, multiple: int = 1) -> MicroBatch:
        """The rows ``rows`` packed into one THD sequence (a padding tail rounds its length up to
        ``multiple``); loss-side tensors stay ``[len(rows), L]`` rows trimmed to the longest."""
        if not rows:  # a rank with fewer rows than the agreed micro-batch count: one masked pad token
            return self._empty_micro_batch(pad_id, multiple)
        idx = torch.tensor(rows)
        lens = self.row_lengths[idx].tolist()
        width = max(lens)
        tokens = torch.cat([self.tokens[r, :n] for r, n in zip(rows, lens)])
        labels = torch.cat([self.labels[r, :n] for r, n in zip(rows, lens)])
        positions = torch.cat([torch.arange(n) for n in lens])
        starts = [0]
        for n in lens:
            starts.append(starts[-1] + n)
        total = starts[-1]
        tail = -total % multiple
        if tail:
            tokens = torch.cat([tokens, torch.full((tail,), pad_id, dtype=tokens.dtype)])
            labels = torch.cat([labels, torch.full((tail,), pad_id, dtype=labels.dtype)])
            positions = torch.cat([positions, torch.arange(tail)])
            starts.append(total + tail)
        col = torch.arange(width)
        row_index = torch.where(col[None, :] < torch.tensor(lens)[:, None],
                                torch.tensor(starts[: len(rows)])[:, None] + col[None, :], 0)
        pick = lambda t: None if t is None else t[idx, :width]  # noqa: E731
        return MicroBatch(
            tokens[None], labels[None], self.mask[idx, :width], positions[None], self.rollout_logp[idx, :width],
            advantages=None if self.advantages is None else self.advantages[idx], old_logp=pick(self.old_logp),
            ref_logp=pick(self.ref_logp), is_weights=pick(self.is_weights),
            cu_seqlens=torch.tensor(starts, dtype=torch.int32), row_index=row_index)

    def _empty_micro_batch(self, pad_id: int, multiple: int) -> MicroBatch:
        n = max(multiple, 1)
        tokens = torch.full((1, n), pad_id, dtype=torch.long)
        zeros = torch.zeros(1, 1)
        return MicroBatch(
            tokens, tokens.clone(), zeros, torch.arange(n)[None], zeros.clone(),
            advantages=None if self.advantages is None else torch.zeros(1),
            old_logp=None if self.old_logp is None else zeros.clone(),
            ref_logp=None if self.ref_logp is None else zeros.clone(),
            is_weights=None if self.is_weights is None else torch.ones(1, 1),
            cu_seqlens=torch.tensor([0, n], dtype=torch.int32), row_index=torch.zeros(1, 1, dtype=torch.long))

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
        device = cuda_device_or_none()
        t = torch.tensor([longest], device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        longest = int(t.item())
    return (longest + multiple - 1) // multiple * multiple
