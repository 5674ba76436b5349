"""Maths answers built to hang sympy: each scores 0 within its limit + 1 s, and the batch goes on.

``9^{9^{9^{9}}}`` makes sympy evaluate a 370-million-digit power inside CPython's C long
arithmetic, which no signal interrupts: only killing the worker stops it. Deep nesting stresses
the recursive-descent parser; huge factorials stress sympy's evaluation.
"""

from __future__ import annotations

import os
import time

import pytest

from r1mega.rewards import RewardManager

from tests.rewards.reward_helpers import think

TIMEOUT_S = 1.0
HOSTILE = {
    "power_tower": "9^{9^{9^{9}}}",
    "power_tower_2": "2^{2^{2^{2^{2^{2}}}}}",
    "huge_power": "10^{10^{10}}",
    "huge_factorial": "100000000!",
    "factorial_of_power": "(10^{100})!",
    "nested_fractions": "\\frac{1}{" * 400 + "2" + "}" * 400,
    "nested_parentheses": "(" * 3000 + "1" + ")" * 3000,
    "nested_roots": "\\sqrt{" * 300 + "2" + "}" * 300,
    "long_integer": "1" + "0" * 100000,
}


@pytest.fixture(scope="module")
def manager():
    options = {"timeout_s": TIMEOUT_S, "max_answer_chars": 200000}
    config = {"num_workers": 2, "sources": {
        "math": {"components": [{"name": "math_accuracy", "options": options}]},
        # ordinary answers get a generous limit, so a loaded machine cannot time them out
        "math_relaxed": {"components": [{"name": "math_accuracy", "options": {"timeout_s": 30.0}}]},
    }}
    with RewardManager(config) as rm:
        rm.score({"completion": think("\\boxed{x+1}"), "data_source": "math", "answer": "1+x"})  # warm the pool
        yield rm


def _item(pred: str, gold: str = "3", source: str = "math") -> dict:
    return {"completion": think(f"The answer is \\boxed{{{pred}}}."), "data_source": source, "answer": gold}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_answer_scores_zero_in_time(manager, name):
    assert manager.pool.wait_ready()  # the previous item's worker may still be being replaced
    start = time.monotonic()
    result = manager.score(_item(HOSTILE[name]))
    elapsed = time.monotonic() - start
    assert result.reward == 0.0
    assert elapsed <= TIMEOUT_S + 1.0, f"{name} took {elapsed:.2f}s"


def _timed_batch(rm, items):
    start = time.monotonic()
    results = rm.score_batch(items)
    return results, time.monotonic() - start


def test_a_hanging_item_does_not_stall_the_batch(manager):
    # a comparable batch without the hang sets the baseline, so machine load cannot fail the test
    _, baseline = _timed_batch(manager, [_item(f"{n}+y", f"y+{n}", "math_relaxed") for n in range(20)])
    normal = [_item(f"{n}+x", f"x+{n}", "math_relaxed") for n in range(20)]
    batch = normal[:10] + [_item(HOSTILE["power_tower"])] + normal[10:]
    results, elapsed = _timed_batch(manager, batch)
    assert [r.reward for r in results] == [1.0] * 10 + [0.0] + [1.0] * 10
    assert results[10].details["math_accuracy"]["status"] == "timeout"
    # the stuck worker is interrupted at its limit while the other one keeps scoring
    assert elapsed <= TIMEOUT_S + 1.0 + baseline


def test_timeouts_are_not_cached(manager):
    first = manager.score(_item(HOSTILE["power_tower"], gold="4"))
    second = manager.score(_item(HOSTILE["power_tower"], gold="4"))
    assert first.details["math_accuracy"]["status"] == second.details["math_accuracy"]["status"] == "timeout"


def test_workers_are_gone_after_close():
    config = {"num_workers": 2, "sources": {"math": {"components": [{"name": "math_accuracy",
                                                                      "options": {"timeout_s": TIMEOUT_S}}]}}}
    rm = RewardManager(config)
    assert rm.score(_item(HOSTILE["power_tower"])).reward == 0.0
    pids = rm.pool.pids
    rm.close()
    for pid in pids:
        gone = not os.path.exists(f"/proc/{pid}")
        assert gone or open(f"/proc/{pid}/stat").read().split()[2] == "Z"
