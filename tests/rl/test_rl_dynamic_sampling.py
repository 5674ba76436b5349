"""DAPO dynamic sampling: group filtering and accumulation across generation rounds."""

from __future__ import annotations

import pytest
import torch

from r1mega.rl.dynamic_sampling import GroupAccumulator, informative_groups


def test_informative_groups():
    rewards = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.3, 0.3001])
    assert informative_groups(rewards, 2).tolist() == [True, False, False, True]


def _round(groups: list[list[float]], first_id: int):
    rewards = torch.tensor([r for g in groups for r in g])
    ids = list(range(first_id, first_id + len(rewards)))
    return rewards, {"sample_id": ids, "tokens": torch.tensor(ids)[:, None].repeat(1, 3)}


def test_accumulates_informative_groups_until_full():
    acc = GroupAccumulator(target_groups=3, group_size=2, max_rounds=5)
    rewards, fields = _round([[1, 1], [1, 0], [0, 0]], 0)  # keeps group 1 (samples 2, 3)
    assert acc.add(rewards, fields) == 1 and not acc.is_full
    rewards, fields = _round([[0, 1], [1, 1], [1, 0]], 6)  # keeps samples 6, 7 and 10, 11
    assert acc.add(rewards, fields) == 2 and acc.is_full
    out_rewards, out = acc.result()
    assert out["sample_id"] == [2, 3, 6, 7, 10, 11]
    assert out["tokens"][:, 0].tolist() == [2, 3, 6, 7, 10, 11]
    assert out_rewards.tolist() == [1.0, 0.0, 0.0, 1.0, 1.0, 0.0]
    assert acc.metrics() == {"dynamic_sampling/rounds": 2.0, "dynamic_sampling/kept_frac": 0.5}


def test_truncates_to_target():
    acc = GroupAccumulator(target_groups=1, group_size=2, max_rounds=1)
    acc.add(*_round([[0, 1], [1, 0]], 0))
    rewards, fields = acc.result()
    assert fields["sample_id"] == [0, 1] and rewards.tolist() == [0.0, 1.0]


def test_gives_up_after_max_rounds():
    acc = GroupAccumulator(target_groups=2, group_size=2, max_rounds=2)
    for first in (0, 4):
        acc.check_can_continue()
        acc.add(*_round([[1, 1], [0, 1]], first))  # one informative group per round
    assert acc.is_full
    acc = GroupAccumulator(target_groups=5, group_size=2, max_rounds=1)
    acc.add(*_round([[1, 1], [0, 1]], 0))
    with pytest.raises(RuntimeError, match="max_dynamic_sampling_rounds"):
        acc.check_can_continue()
    with pytest.raises(RuntimeError, match="1/5"):
        acc.result()
    rewards, fields = acc.result(allow_partial=True)
    assert fields["sample_id"] == [2, 3]


def test_rejects_inconsistent_input():
    acc = GroupAccumulator(target_groups=2, group_size=2, max_rounds=3)
    with pytest.raises(ValueError, match="samples"):
        acc.add(torch.tensor([0.0, 1.0]), {"x": [1, 2, 3]})
    acc.add(torch.tensor([0.0, 1.0]), {"x": [1, 2]})
    with pytest.raises(ValueError, match="fields changed"):
        acc.add(torch.tensor([0.0, 1.0]), {"y": [1, 2]})
    with pytest.raises(ValueError):
        GroupAccumulator(target_groups=0, group_size=2, max_rounds=1)
