"""pass@k and cons@k against hand-computed values; majority voting by mathematical equivalence."""

from __future__ import annotations

import json

import pytest

from r1mega.eval.metrics import cluster_answers, majority_correct, pass_at_k
from r1mega.eval.runner import _equivalence, evaluate
from r1mega.rewards import RewardManager
from r1mega.rollout.base import Generation


@pytest.fixture(scope="module")
def rewarder():
    with RewardManager({"num_workers": 0}) as rm:
        yield rm


@pytest.mark.parametrize("n,c,k,expected", [
    (4, 1, 2, 1 - 3 / 6),      # 1 - C(3,2)/C(4,2)
    (5, 2, 3, 1 - 1 / 10),     # 1 - C(3,3)/C(5,3)
    (8, 3, 1, 3 / 8),          # pass@1 is the fraction correct
    (8, 0, 8, 0.0),
    (8, 1, 8, 1.0),
    (6, 2, 5, 1.0),            # n - c < k: every draw of 5 contains a correct one
    (10, 3, 2, 1 - 21 / 45),   # 1 - C(7,2)/C(10,2)
])
def test_pass_at_k_hand_computed(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_rejects_impossible_counts():
    with pytest.raises(ValueError, match="pass@k"):
        pass_at_k(4, 5, 1)
    with pytest.raises(ValueError, match="pass@k"):
        pass_at_k(4, 1, 5)


def test_half_in_three_notations_is_one_class(rewarder):
    same = _equivalence(rewarder, "math")
    answers = ["0.5", "\\frac{1}{2}", "3", "1/2", None, "\\dfrac{1}{2}"]
    assert cluster_answers(answers, same) == [[0, 1, 3, 5], [2]]


def test_majority_vote_by_equivalence(rewarder):
    same = _equivalence(rewarder, "math")
    # 0.5, \frac{1}{2} and 1/2 outvote two 3s although no single spelling has a majority.
    answers = ["3", "0.5", "3", "\\frac{1}{2}", "1/2"]
    assert majority_correct(answers, [False, True, False, True, True], same) is True
    # A 2-2 tie goes to the class seen first.
    assert majority_correct(["3", "0.5", "3", "1/2"], [False, True, False, True], same) is False
    assert majority_correct([None, None], [False, False], same) is False


class ScriptedEngine:
    """Returns fixed texts: ``sampled`` for temperature > 0 (k per prompt, in order), ``greedy`` otherwise."""

    def __init__(self, sampled: list[str], greedy: list[str]):
        self.sampled, self.greedy = sampled, greedy

    def generate(self, prompts, params):
        texts = self.greedy if params.temperature == 0 else self.sampled
        assert len(texts) == len(prompts)
        return [Generation(p, [1] * (i + 1), [0.0] * (i + 1), "stop", t) for i, (p, t) in enumerate(zip(prompts, texts))]


class _Tok:
    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [1, 2, 3]}


def _boxed(v: str) -> str:
    return f"<think>work</think> The answer is \\boxed{{{v}}}."


def test_evaluate_pass1_consk_greedy_by_hand(rewarder):
    records = [{"prompt": "q1", "answer": "1/2", "data_source": "math"},
               {"prompt": "q2", "answer": "7", "data_source": "math"}]
    # q1: 2 of 4 correct, majority (0.5 ~ \frac{1}{2}) correct; q2: 1 of 4 correct, majority 5 wrong.
    sampled = [_boxed("0.5"), _boxed("\\frac{1}{2}"), _boxed("2"), _boxed("3"),
               _boxed("5"), _boxed("7"), _boxed("5"), "no answer"]
    greedy = [_boxed("0.5"), _boxed("5")]
    out = evaluate(ScriptedEngine(sampled, greedy), _Tok(), records, "plain", rewarder, 4, 0.6, 0.95, 16)
    assert out["n_questions"] == 2 and out["k"] == 4
    assert out["pass@1"] == pytest.approx((2 / 4 + 1 / 4) / 2)
    assert out["pass@4"] == pytest.approx(1.0)
    assert out["cons@4"] == pytest.approx(0.5)
    assert out["greedy"] == pytest.approx(0.5)


def test_evaluate_keeps_every_response_with_its_score_when_asked(rewarder, tmp_path):
    from r1mega.eval.runner import write_samples

    records = [{"id": "a", "prompt": "q1", "answer": "1/2", "data_source": "math"},
               {"id": "b", "prompt": "q2", "answer": "7", "data_source": "math"}]
    sampled = [_boxed("0.5"), _boxed("2"), _boxed("7"), "no answer"]
    greedy = [_boxed("3"), _boxed("7")]
    plain = evaluate(ScriptedEngine(sampled, greedy), _Tok(), records, "plain", rewarder, 2, 0.6, 0.95, 16)
    assert "samples" not in plain
    out = evaluate(ScriptedEngine(sampled, greedy), _Tok(), records, "plain", rewarder, 2, 0.6, 0.95, 16,
                   keep_samples=True)
    got = [(s["id"], s["completion"], s["score"], s["greedy"]) for s in out["samples"]]
    assert got == [("a", sampled[0], 1.0, False), ("a", sampled[1], 0.0, False), ("a", greedy[0], 0.0, True),
                   ("b", sampled[2], 1.0, False), ("b", sampled[3], 0.0, False), ("b", greedy[1], 1.0, True)]
    # the metrics do not change when samples are kept
    assert {k: v for k, v in out.items() if k != "samples"} == plain
    write_samples(tmp_path / "s.jsonl", out["samples"])
    lines = (tmp_path / "s.jsonl").read_text().splitlines()
    assert [json.loads(line)["completion"] for line in lines] == [g[1] for g in got]
