"""RewardManager: routing, weighting, bad items, de-duplication, caching, pool vs in-process."""

from __future__ import annotations

import os

import pytest

from r1mega.rewards import RewardItem, RewardManager

from tests.rewards.reward_helpers import python_block, think

SYNTHETIC = "<think>\n27 * 15 = 405\n</think>\nThe answer is \\boxed{405}."


def _inline(sources: dict) -> RewardManager:
    return RewardManager({"num_workers": 0, "sources": sources})


def test_default_recipe_on_the_synthetic_task():
    with RewardManager({"num_workers": 0}) as rm:
        right, wrong, unformatted = rm.score_batch([
            {"completion": SYNTHETIC, "data_source": "synthetic", "answer": "405"},
            {"completion": SYNTHETIC, "data_source": "synthetic", "answer": 406},
            {"completion": "The answer is \\boxed{405}.", "data_source": "synthetic", "answer": "405"},
        ])
    assert (right.reward, right.components) == (2.0, {"math_accuracy": 1.0, "format": 1.0})
    assert (wrong.reward, wrong.components) == (1.0, {"math_accuracy": 0.0, "format": 1.0})
    assert (unformatted.reward, unformatted.error) == (0.0, None)  # no </think>: no answer, bad format


def test_weights_and_keys():
    sources = {"mix": {"components": [
        {"name": "math_accuracy", "weight": 2.0},
        {"name": "format", "weight": 0.5},
        {"name": "repetition", "weight": 1.0, "key": "rep", "options": {"ngram": 1}},
    ]}}
    with _inline(sources) as rm:
        result = rm.score({"completion": think("\\boxed{3} \\boxed{3}"), "data_source": "mix", "answer": "3"})
    assert set(result.components) == {"math_accuracy", "format", "rep"}
    rep = result.components["rep"]
    assert rep < 0
    assert result.reward == pytest.approx(2.0 + 0.5 + rep)
    assert result.details["math_accuracy"]["status"] == "correct"


@pytest.mark.parametrize("item, error", [
    ({"completion": "x", "data_source": "nope", "answer": "1"}, "unknown data_source 'nope' (configured:"),
    ({"completion": "x", "data_source": "math"}, "missing field 'answer'"),
    ({"data_source": "math", "answer": "1"}, "missing field 'completion'"),
    ({"completion": 5, "data_source": "math", "answer": "1"}, "field 'completion' must be a string"),
    ({"completion": "x", "data_source": "math", "answer": {"a": 1}}, "field 'answer' must be a string"),
    ({"completion": "x", "data_source": "code"}, "missing field 'tests'"),
    ("not a mapping", "item must be a mapping"),
])
def test_bad_items_become_error_results(item, error):
    with RewardManager({"num_workers": 0}) as rm:
        good, bad = rm.score_batch([{"completion": SYNTHETIC, "data_source": "synthetic", "answer": "405"}, item])
    assert good.reward == 2.0 and good.error is None
    assert bad.reward == 0.0 and bad.components == {}
    assert bad.error.startswith(error)


def test_reward_items_and_multiple_gold_answers():
    with _inline({"math": {"components": [{"name": "math_accuracy"}]}}) as rm:
        item = RewardItem(completion=think("\\boxed{0.5}"), data_source="math", answer=["1/3", "\\frac{1}{2}"])
        assert rm.score(item).reward == 1.0


class _CountingExecutor:
    def __init__(self, inner):
        self.inner, self.jobs = inner, []

    def run(self, jobs):
        self.jobs.append(len(jobs))
        return self.inner.run(jobs)

    def close(self):
        self.inner.close()


def test_identical_jobs_run_once_and_verdicts_are_cached():
    with _inline({"math": {"components": [{"name": "math_accuracy"}]}}) as rm:
        counter = _CountingExecutor(rm._get_executor())
        rm._executor = counter
        group = [{"completion": think("\\boxed{1+x}"), "data_source": "math", "answer": "x+1"}] * 8
        group.append({"completion": think("\\boxed{405}"), "data_source": "math", "answer": "405"})  # fast path
        first = rm.score_batch(group)
        second = rm.score_batch(group[:3])
    assert [r.reward for r in first] == [1.0] * 9
    assert [r.reward for r in second] == [1.0] * 3
    assert counter.jobs == [1]  # 8 identical sympy jobs -> 1; the second batch is served from the cache


def test_pool_and_inline_agree():
    items = [
        {"completion": SYNTHETIC, "data_source": "math", "answer": "405"},
        {"completion": think("\\boxed{\\frac{\\sqrt2}{2}}"), "data_source": "math", "answer": "\\sqrt{2}/2"},
        {"completion": think("\\boxed{(1,2)}"), "data_source": "math", "answer": "(1,2]"},
        {"completion": python_block("print(int(input()) + 1)"), "data_source": "code",
         "tests": {"inputs": ["1"], "outputs": ["2"]}},
        {"completion": "<think>Nous calculons la somme.</think> 5", "data_source": "lang"},
    ]
    sources = {"math": {"components": [{"name": "math_accuracy"}, {"name": "format"}]},
               "code": {"components": [{"name": "code_accuracy"}]},
               "lang": {"components": [{"name": "language", "options": {"target": "fr"}}]}}
    with RewardManager({"num_workers": 0, "sources": sources}) as inline, \
            RewardManager({"num_workers": 2, "sources": sources}) as pooled:
        a, b = inline.score_batch(items), pooled.score_batch(items)
    assert [r.components for r in a] == [r.components for r in b]
    assert [r.reward for r in b] == [2.0, 2.0, 1.0, 1.0, 1.0]


def test_close_stops_the_pool_and_refuses_more_work():
    rm = RewardManager({"num_workers": 1, "sources": {"math": {"components": [{"name": "math_accuracy"}]}}})
    assert rm.pool is None  # started lazily
    rm.score({"completion": think("\\boxed{1+x}"), "data_source": "math", "answer": "x+1"})
    (pid,) = rm.pool.pids
    with rm:
        pass
    assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"
    with pytest.raises(RuntimeError, match="closed"):
        rm.score({"completion": think("\\boxed{1+x}"), "data_source": "math", "answer": "x+2"})


def test_fast_path_items_never_start_the_pool():
    with RewardManager({"num_workers": 2}) as rm:
        rm.score_batch([{"completion": SYNTHETIC, "data_source": "synthetic", "answer": "405"}] * 4)
        assert rm.pool is None
