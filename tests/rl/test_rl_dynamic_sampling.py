"""DAPO dynamic sampling: which groups are kept, how a short batch is completed, and the unit a
batch is cut to. The stage-level behaviour (metrics, resume) is in tests/stages."""

from __future__ import annotations

import pytest
import torch

from r1mega.rl.dynamic_sampling import choose, informative_groups, split_groups, unit_groups
from r1mega.rollout.base import Generation


def test_informative_groups():
    rewards = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.3, 0.3001])
    assert informative_groups(rewards, 2).tolist() == [True, False, False, True]


def _groups(rewards: list[list[float]], first: int = 0):
    flat = torch.tensor([r for g in rewards for r in g])
    gens = [Generation([first + i // 2], [first + i], [0.0], "stop") for i in range(len(flat))]
    comps = {"accuracy": flat.clone()}
    return split_groups([[first + p] for p in range(len(rewards))], gens, flat, comps, 2)


def test_split_keeps_each_prompt_with_its_responses():
    groups = _groups([[1, 0], [0, 0], [1, 1]], first=10)
    assert [g.prompt for g in groups] == [[10], [11], [12]]
    assert [[x.token_ids[0] for x in g.generations] for g in groups] == [[10, 11], [12, 13], [14, 15]]
    assert groups[2].rewards.tolist() == [1.0, 1.0] and groups[0].components["accuracy"].tolist() == [1.0, 0.0]


def test_full_batch_takes_the_first_kept_groups():
    kept = _groups([[1, 0], [0, 1], [1, 0]])
    chosen, padded = choose(kept, [], need=2, unit=2, exhausted="keep")
    assert chosen == kept[:2] and padded == 0


@pytest.mark.parametrize("n_kept, expect_kept, expect_pad", [(5, 4, 0), (3, 2, 0), (1, 1, 1), (0, 0, 2)])
def test_keep_rounds_down_to_whole_units_and_fills_one_unit_when_none(n_kept, expect_kept, expect_pad):
    kept = _groups([[1, 0]] * n_kept)
    dropped = _groups([[0, 0]] * 6, first=100)
    chosen, padded = choose(kept, dropped, need=8, unit=2, exhausted="keep")
    assert chosen[:expect_kept] == kept[:expect_kept] and padded == expect_pad
    assert len(chosen) == max(expect_kept, 2) and len(chosen) % 2 == 0
    assert all(g in dropped for g in chosen[expect_kept:])


def test_pad_fills_the_batch_with_dropped_groups():
    kept, dropped = _groups([[1, 0]] * 3), _groups([[0, 0]] * 6, first=100)
    chosen, padded = choose(kept, dropped, need=8, unit=2, exhausted="pad")
    assert chosen == kept + dropped[:5] and padded == 5
    with pytest.raises(ValueError, match="fewer than the 8"):
        choose(kept, dropped[:2], need=8, unit=2, exhausted="pad")


@pytest.mark.parametrize("g, mbs, nmini, dp, expect", [(4, 8, 1, 1, 2), (4, 8, 1, 2, 4), (8, 4, 1, 1, 1),
                                                       (8, 8, 2, 1, 2), (6, 4, 1, 2, 4)])
def test_unit_groups_give_whole_micro_batches_per_rank_and_minibatch(g, mbs, nmini, dp, expect):
    unit = unit_groups(g, mbs, nmini, dp)
    assert unit == expect
    per_rank_responses = unit // dp * g
    assert unit % dp == 0 and per_rank_responses % (mbs * nmini) == 0
