"""Who computes which rollout rows, and how rows are packed into token-budget micro-batches.

With ``trainer.max_tokens_per_microbatch`` set, the RL passes run on packed sequences:

1. :func:`balanced_partition` deals the step's rows (all data-parallel ranks' rows, see
   :meth:`~r1mega.rl.batch.RolloutBatch.gathered`) to the DP ranks so that their token counts
   balance (the Karmarkar-Karp largest differencing method, as veRL balances its batches);
2. :func:`token_budget_bins` packs one rank's rows into as few micro-batches as the budget
   allows (first-fit decreasing gives the count), agreed to the maximum count over the DP group
   (expert-parallel all-to-alls need every rank to run as many forwards), then balances the rows
   over that many bins with Karmarkar-Karp again.

Without the budget rows stay on the rank that generated them, ``trainer.micro_batch_size`` rows
per micro-batch, padded to one length (the layout every earlier release used).
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass
from typing import Optional

import torch
import torch.distributed as dist

from r1mega.device import on_gpu


def balanced_partition(weights: list[int], k: int) -> list[list[int]]:
    """Indices of ``weights`` split into ``k`` parts of near-equal sums (Karmarkar-Karp's
    largest differencing method, k-way). Every part is sorted; no part is empty while there
    are at least ``k`` items. Deterministic: ties break by index."""
    assert k >= 1
    if not weights:
        return [[] for _ in range(k)]
    # each heap entry is a k-way partial partition, as (spread, tiebreak, sums, parts) with sums
    # descending; merging the two with the largest spreads pairs the largest sum of one with the
    # smallest of the other, which is what keeps the final sums close
    counter = itertools.count()
    heap = []
    for i, w in sorted(enumerate(weights), key=lambda iw: (-iw[1], iw[0])):
        sums = [w] + [0] * (k - 1)
        parts = [[i]] + [[] for _ in range(k - 1)]
        heapq.heappush(heap, (-w, next(counter), sums, parts))
    while len(heap) > 1:
        _, _, s1, p1 = heapq.heappop(heap)
        _, _, s2, p2 = heapq.heappop(heap)
        merged = sorted(((s1[j] + s2[k - 1 - j], p1[j] + p2[k - 1 - j]) for j in range(k)), key=lambda x: -x[0])
        sums = [s for s, _ in merged]
        parts = [p for _, p in merged]
        heapq.heappush(heap, (-(sums[0] - sums[-1]), next(counter), sums, parts))
    return [sorted(p) for p in heap[0][3]]


def bins_needed(lengths: list[int], budget: int) -> int:
    """Micro-batches first-fit decreasing needs for rows of ``lengths`` tokens under ``budget``."""
    room: list[int] = []
    for n in sorted(lengths, reverse=True):
        if n > budget:
            raise ValueError(f"a rollout row of {n} tokens exceeds trainer.max_tokens_per_microbatch={budget}")
        for b, r in enumerate(room):
            if n <= r:
                room[b] -= n
                break
        else:
            room.append(budget - n)
    return len(room)


def token_budget_bins(lengths: list[int], budget: int, group=None) -> list[list[int]]:
    """Positions of ``lengths`` grouped into micro-batches of at most ``budget`` tokens where
    possible; the number of micro-batches is the same on every rank of ``group``. Balancing can
    exceed the budget by less than one row when the agreed count forces it; it never leaves a
    micro-batch empty while rows remain."""
    count = max(bins_needed(lengths, budget), 1)
    if group is not None and dist.is_initialized() and dist.get_world_size(group) > 1:
        t = torch.tensor([count], device=_collective_device(group))
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=group)
        count = int(t.item())
    bins = balanced_partition(lengths, count)
    over = max((sum(lengths[i] for i in b) for b in bins), default=0)
    if over > budget:  # KK balances sums, FFD guarantees the budget: keep FFD's packing then
        bins = _first_fit(lengths, budget, count)
    return bins


def _first_fit(lengths: list[int], budget: int, count: int) -> list[list[int]]:
    bins: list[list[int]] = [[] for _ in range(count)]
    room = [budget] * count
    for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        b = next((b for b in range(count) if lengths[i] <= room[b]), None)
        if b is None:  # the agreed count is larger than needed: nothing can overflow here
            b = max(range(count), key=lambda b: room[b])
        bins[b].append(i)
        room[b] -= lengths[i]
    return [sorted(b) for b in bins]


def _collective_device(group):
    if dist.get_backend(group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return None


@dataclass
class Layout:
    """How a rank's rows become micro-batches (from ``trainer.*`` and the parallel layout)."""

    micro_batch_size: int
    """Padded rows per micro-batch (no token budget)."""
    max_tokens: Optional[int]
    """Token budget of a packed micro-batch; None: padded rows."""
    pad_id: int
    multiple: int
    """A packed sequence's length rounds up to this (sequence parallelism, GPU GEMM shapes)."""
    group: object = None
    """Data-parallel group over which the micro-batch count is agreed."""

    @property
    def packed(self) -> bool:
        return self.max_tokens is not None


def split(batch, rows: list[int], layout: Layout) -> tuple[list[list[int]], list]:
    """``rows`` of ``batch`` as micro-batches: (rows of each, MicroBatch of each)."""
    if not layout.packed:
        parts = [rows[j : j + layout.micro_batch_size] for j in range(0, len(rows), layout.micro_batch_size)]
        return parts, [batch.micro_batches(p, layout.micro_batch_size)[0] for p in parts]
    lengths = batch.row_lengths[torch.tensor(rows, dtype=torch.long)].tolist() if rows else []
    parts = [[rows[i] for i in b] for b in token_budget_bins(lengths, layout.max_tokens, layout.group)]
    return parts, [batch.packed_micro_batch(p, layout.pad_id, layout.multiple) for p in parts]


def schedule_shape(mbs: list, layout: Layout) -> tuple[int, int]:
    """(seq_length, micro_batch_size) for Megatron's schedule: packed micro-batches are one
    sequence each, of varying length (pipeline stages then exchange shapes first)."""
    if layout.packed:
        return max(mb.seq_length for mb in mbs), 1
    return mbs[0].seq_length, layout.micro_batch_size


def assign_rows(batch, dp_rank: int, dp: int, balance: bool) -> None:
    """Set ``batch.owned``: with ``balance``, a Karmarkar-Karp share of all rows by token count;
    otherwise the rows this rank generated (as :meth:`gathered` left them)."""
    if balance and dp > 1:
        batch.owned = balanced_partition(batch.row_lengths.tolist(), dp)[dp_rank]


def layout_for(cfg, dims, pad_id: int, tm, reference=None) -> Layout:
    """The run's :class:`Layout`. Packed micro-batches vary in length, so with pipeline
    parallelism the stages exchange each activation's shape first (``variable_seq_lengths``)."""
    from megatron.core import parallel_state as ps

    layout = Layout(cfg.trainer.micro_batch_size, cfg.trainer.max_tokens_per_microbatch, pad_id,
                    dims.pad_multiple(on_gpu()), ps.get_data_parallel_group())
    if layout.packed and dims.pp > 1:
        for model in [tm] + ([reference.model] if reference is not None else []):
            for chunk in model.chunks:
                chunk.config.variable_seq_lengths = True
    return layout
