"""Rollout record/replay: exact round trip, slicing for another DP size, and clear refusals."""

from __future__ import annotations

import pytest
import torch

from r1mega.rl.replay import record_step, replay_step, step_file
from r1mega.rollout.base import Generation

G = 2
PROMPTS = [[1, 2, 3], [4, 5], [6, 7, 8, 9], [10]]
SAMPLE_IDS = [17, 3, 42, 8]


def _gens():
    out = []
    for i, p in enumerate(PROMPTS):
        for j in range(G):
            n = 1 + (i + j) % 3
            toks = [100 + 10 * i + j + k for k in range(n)]
            # log-probs with full float precision: JSON must give back the same doubles
            out.append(Generation(p, toks, [-(k + 1) / 3.0 - i * 1e-9 for k in range(n)],
                                  "stop" if j else "length", f"t{i}{j}"))
    return out


@pytest.fixture
def recorded(tmp_path):
    gens = _gens()
    rewards = torch.tensor([0.0, 1.0, 0.5, 0.25, 1.0, 1.0, 0.0, 0.75])
    comps = {"accuracy": (rewards > 0.6).float(), "reward_errors": torch.zeros(8)}
    record_step(tmp_path, 3, SAMPLE_IDS, PROMPTS, gens, rewards, comps, G)
    return tmp_path, gens, rewards, comps


def test_round_trip_is_exact(recorded):
    d, gens, rewards, comps = recorded
    got, r, c = replay_step(d, 3, SAMPLE_IDS, PROMPTS, G, max_tokens=8, dp_rank=0, dp=1)
    assert [(g.prompt_ids, g.token_ids, g.logprobs, g.finish_reason, g.text) for g in got] == \
        [(g.prompt_ids, g.token_ids, g.logprobs, g.finish_reason, g.text) for g in gens]
    assert torch.equal(r, rewards) and torch.equal(c["accuracy"], comps["accuracy"])
    assert not list(d.glob("*.tmp*"))  # written through a temporary file, renamed


def test_replay_at_dp2_gives_each_rank_its_contiguous_share(recorded):
    d, gens, rewards, _ = recorded
    for rank in (0, 1):
        mine = PROMPTS[2 * rank : 2 * rank + 2]
        got, r, _ = replay_step(d, 3, SAMPLE_IDS, mine, G, 8, rank, 2)
        assert [g.token_ids for g in got] == [g.token_ids for g in gens[4 * rank : 4 * rank + 4]]
        assert torch.equal(r, rewards[4 * rank : 4 * rank + 4])


def test_missing_step_names_the_file(recorded):
    d = recorded[0]
    with pytest.raises(ValueError, match="step_000004.json for RL step 4"):
        replay_step(d, 4, SAMPLE_IDS, PROMPTS, G, 8, 0, 1)


@pytest.mark.parametrize("kwargs,message", [
    (dict(sample_ids=[17, 3, 42, 9]), "recorded for dataset rows"),
    (dict(group_size=4), "group_size=2, this run has rl.group_size=4"),
    (dict(max_tokens=2), "more than rollout.max_tokens=2"),
    (dict(prompts=[[1, 2, 3], [4, 6], [6, 7, 8, 9], [10]]), "prompt 1 \\(dataset row 3\\) was tokenized differently"),
])
def test_mismatched_run_is_refused(recorded, kwargs, message):
    d = recorded[0]
    args = dict(sample_ids=SAMPLE_IDS, prompts=PROMPTS, group_size=G, max_tokens=8, dp_rank=0, dp=1)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        replay_step(d, 3, **args)


def test_corrupt_file_is_refused(recorded):
    d = recorded[0]
    step_file(d, 3).write_text("{not json")
    with pytest.raises(ValueError, match="not a readable rollout record"):
        replay_step(d, 3, SAMPLE_IDS, PROMPTS, G, 8, 0, 1)


def test_record_and_replay_dirs_are_exclusive():
    from r1mega.config.errors import ConfigError
    from r1mega.rl.config import GRPOConfig

    with pytest.raises(ConfigError, match="rl.record_dir and rl.replay_dir are exclusive"):
        GRPOConfig(record_dir="a", replay_dir="b").validate()
