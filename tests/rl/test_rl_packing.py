"""Packed RL micro-batches: the partition heuristics, the THD layout, and a packed forward and
backward equal to the padded one (one process; the layouts over gloo are in tests/parallel)."""

from __future__ import annotations

import itertools
import random

import pytest
import torch

from r1mega.rl.batch import RolloutBatch
from r1mega.rl.packing import Layout, balanced_partition, bins_needed, split, token_budget_bins
from r1mega.rollout.base import Generation


def _spread(weights, parts):
    sums = [sum(weights[i] for i in p) for p in parts]
    return max(sums) - min(sums)


def _best_spread(weights, k):
    best = None
    for labels in itertools.product(range(k), repeat=len(weights)):
        sums = [0] * k
        for w, lab in zip(weights, labels):
            sums[lab] += w
        best = min(best if best is not None else 10**9, max(sums) - min(sums))
    return best


@pytest.mark.parametrize("seed", range(20))
def test_balanced_partition_is_a_partition_close_to_optimal(seed):
    rng = random.Random(seed)
    k = rng.choice([2, 3])
    weights = [rng.randint(1, 100) for _ in range(rng.randint(k, 9))]
    parts = balanced_partition(weights, k)
    assert sorted(i for p in parts for i in p) == list(range(len(weights)))
    assert all(parts)
    # largest differencing is not optimal in general; on these sizes it stays within the
    # largest item of the exhaustive optimum (a round-robin deal is often off by far more)
    assert _spread(weights, parts) <= _best_spread(weights, k) + max(weights)


def test_balanced_partition_beats_contiguous_slices_on_skewed_lengths():
    lengths = [4000, 3900, 3800, 3700, 100, 90, 80, 60]  # long responses bunched on one rank
    parts = balanced_partition(lengths, 2)
    contiguous = [list(range(4)), list(range(4, 8))]
    assert _spread(lengths, parts) < _spread(lengths, contiguous) / 10


def test_bins_needed_is_first_fit_decreasing():
    assert bins_needed([5, 5, 5, 5], 10) == 2
    assert bins_needed([6, 5, 4, 3, 2], 10) == 2
    assert bins_needed([], 10) == 0
    with pytest.raises(ValueError, match="max_tokens_per_microbatch=10"):
        bins_needed([11], 10)


def test_token_budget_bins_respect_the_budget_and_cover_every_row():
    rng = random.Random(0)
    for _ in range(50):
        lengths = [rng.randint(1, 50) for _ in range(rng.randint(1, 30))]
        bins = token_budget_bins(lengths, 64)
        assert sorted(i for b in bins for i in b) == list(range(len(lengths)))
        assert all(sum(lengths[i] for i in b) <= 64 for b in bins)
        assert len(bins) == bins_needed(lengths, 64)


def _generations(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    gens = []
    for _ in range(n):
        p = int(torch.randint(2, 6, (1,), generator=g))
        r = int(torch.randint(1, 9, (1,), generator=g))
        prompt = torch.randint(3, 40, (p,), generator=g).tolist()
        resp = torch.randint(3, 40, (r,), generator=g).tolist()
        gens.append(Generation(prompt, resp, (-torch.rand(r, generator=g)).tolist(), "stop"))
    return gens


def _batch(n=6, seed=0):
    gens = _generations(n, seed)
    longest = max(len(x.prompt_ids) + len(x.token_ids) for x in gens) - 1
    b = RolloutBatch.from_generations(gens, torch.zeros(n), {}, pad_id=0, length=longest + 3)
    b.advantages = torch.randn(n, generator=torch.Generator().manual_seed(1))
    b.old_logp = -torch.rand(n, b.seq_length) * b.mask
    return b, gens


def test_packed_micro_batch_layout():
    b, gens = _batch()
    rows = [4, 1, 3]
    mb = b.packed_micro_batch(rows, pad_id=0, multiple=8)
    lens = [len(gens[r].prompt_ids) + len(gens[r].token_ids) - 1 for r in rows]
    assert mb.tokens.shape == (1, -(-sum(lens) // 8) * 8)
    assert mb.cu_seqlens.tolist()[: len(rows) + 1] == [0, *itertools.accumulate(lens)]
    assert mb.cu_seqlens.tolist()[-1] == mb.tokens.shape[1]  # the padding tail is its own document
    for i, r in enumerate(rows):
        full = gens[r].prompt_ids + gens[r].token_ids
        start = int(mb.cu_seqlens[i])
        assert mb.tokens[0, start:start + lens[i]].tolist() == full[:-1]
        assert mb.labels[0, start:start + lens[i]].tolist() == full[1:]
        assert mb.position_ids[0, start:start + lens[i]].tolist() == list(range(lens[i]))
        # unpacking puts every row's packed values back at its own positions
        assert mb.unpack(mb.labels)[i, : lens[i]].tolist() == full[1:]
    width = max(lens)
    assert torch.equal(mb.mask, b.mask[torch.tensor(rows), :width])
    assert torch.equal(mb.old_logp, b.old_logp[torch.tensor(rows), :width])
    assert torch.equal(mb.advantages, b.advantages[torch.tensor(rows)])
    # trimming drops only padding: the mask beyond each row's width is empty
    assert b.mask[torch.tensor(rows), width:].sum() == 0


def test_split_padded_and_packed_cover_the_same_rows():
    b, _ = _batch(8)
    rows = [7, 0, 5, 2, 3]
    parts, mbs = split(b, rows, Layout(2, None, 0, 1))
    assert parts == [[7, 0], [5, 2], [3]] and mbs[0].tokens.shape == (2, b.seq_length)
    parts, mbs = split(b, rows, Layout(2, 16, 0, 1))
    assert sorted(r for p in parts for r in p) == sorted(rows)
    assert all(int(b.row_lengths[p].sum()) <= 16 for p in parts)
    assert all(mb.packed for mb in mbs)


def test_minibatches_cover_every_row_once_even_when_they_do_not_divide():
    # with packing a rank's rows are a token-balanced share: 1 or 3 rows for 2 mini-batches
    from r1mega.rl.update import minibatches

    for rows in ([7], [4, 9, 2], list(range(10)), []):
        parts = minibatches(rows, 2, torch.Generator().manual_seed(0))
        assert len(parts) == 2 and sorted(r for p in parts for r in p) == sorted(rows)
    assert minibatches([3, 1, 2], 1, torch.Generator()) == [[3, 1, 2]]  # one mini-batch keeps the order
