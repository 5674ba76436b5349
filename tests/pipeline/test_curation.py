"""Response filters and the keep/reject decisions of rejection sampling, on strings."""

from __future__ import annotations

import pytest

from r1mega.rewards import RewardManager
from r1mega.rollout.base import Generation
from r1mega.data.curation import CurationConfig, FilterConfig, load_judge
from r1mega.stages.curation import curate_prompt, verify
from r1mega.stages.filters import language_fraction, reject_reason

GOOD = "<think>\n47 + 38: 7 + 8 = 15, write 5 carry 1. So 47 + 38 = 85.\n</think>\nThe answer is \\boxed{85}."


@pytest.fixture(scope="module")
def rewarder():
    with RewardManager({"num_workers": 0}) as rm:
        yield rm


def gen(text: str, finish: str = "stop", n: int = 10) -> Generation:
    return Generation([1], list(range(n)), [0.0] * n, finish, text)


@pytest.mark.parametrize("text,truncated,tokens,reason", [
    (GOOD, False, 30, None),
    (GOOD, True, 30, "truncated"),
    ("47 + 38 = 85. The answer is \\boxed{85}.", False, 30, "malformed"),                     # no think tags
    ("<think>a</think></think> The answer is \\boxed{85}.", False, 30, "malformed"),           # duplicated close
    ("<think><think>a</think> The answer is \\boxed{85}.", False, 30, "malformed"),            # duplicated open
    ("<think>work</think>", False, 30, "malformed"),                                           # no summary
    (GOOD, False, 500, "overlong"),
    ("<think>首先我们计算 the sum 然后进位 carry 一</think> The answer is \\boxed{85}.", False, 30, "mixed_language"),
    ("<think>" + "so the carry is one " * 12 + "</think> The answer is \\boxed{85}.", False, 30, "repetitive"),
])
def test_each_filter_names_its_reason(text, truncated, tokens, reason):
    cfg = FilterConfig(max_response_tokens=100)
    assert reject_reason(text, tokens, truncated, cfg) == reason


def test_filters_can_be_switched_off():
    off = FilterConfig(drop_truncated=False, format_mode="none", min_language_fraction=0.0, max_repeat_fraction=1.0)
    assert reject_reason("首先 " + "x y z w " * 20, 10_000, True, off) is None


def test_language_fraction_counts_reasoning_only():
    assert language_fraction("<think>we add the tens</think> 答案是 5", "en") == 1.0
    assert language_fraction("<think>1 + 2 = 3</think>", "en") is None  # no words at all
    assert language_fraction("<think>we 计算</think>", "en") == pytest.approx(1 / 3)


def test_bundled_reference_solutions_pass_every_filter():
    from r1mega.data.synthetic import SyntheticTaskConfig, generate

    recs = generate(SyntheticTaskConfig(num_train=300, num_test=5, max_terms=3))["train"]
    assert {reject_reason(r["response"], 60, False, FilterConfig()) for r in recs} == {None}


def test_curate_keeps_correct_distinct_capped(rewarder):
    rec = {"id": "q7", "prompt": "Compute 47 + 38.", "answer": "85", "data_source": "synthetic"}
    texts = [GOOD, GOOD.replace("85", "86"), GOOD, "  " + GOOD + "\n", GOOD.replace("So", "Thus"),
             GOOD.replace("So", "Hence"), "no tags \\boxed{85}"]
    gens = [gen(t) for t in texts]
    verdicts = verify(rec, [t.strip() for t in texts], rewarder)
    assert [v.correct for v in verdicts] == [True, False, True, True, True, True, False]  # no </think>: no answer
    assert {v.by for v in verdicts} == {"rules"}
    cfg = CurationConfig(keep_per_prompt=2)
    kept, reasons = curate_prompt(rec, gens, verdicts, cfg, {"checkpoint": "/ck/iter_0000007"})
    assert [k["provenance"]["sample_index"] for k in kept] == [0, 4]
    assert dict(reasons) == {"incorrect": 1, "duplicate": 2, "over_cap": 1, "malformed": 1}
    assert sum(reasons.values()) + len(kept) == len(texts)
    first = kept[0]
    assert first["prompt"] == rec["prompt"] and first["response"] == GOOD and first["answer"] == "85"
    assert first["data_source"] == "synthetic" and first["id"] == "q7-s0"
    prov = first["provenance"]
    assert prov["checkpoint"] == "/ck/iter_0000007" and prov["verified_by"] == "rules"
    assert prov["components"] == {"math_accuracy": 1.0, "format": 1.0} and prov["reward"] == 2.0


def test_judge_decides_what_rules_cannot(rewarder):
    judge = load_judge("tests.pipeline.judges:mentions_reference")
    rec = {"id": "w1", "prompt": "Name the capital of France.", "answer": "Paris", "data_source": "trivia"}
    texts = ["<think>France</think> It is Paris.", "<think>France</think> It is Lyon."]
    verdicts = verify(rec, texts, rewarder, judge)  # 'trivia' has no rule reward
    assert [(v.correct, v.by) for v in verdicts] == [(True, "judge"), (False, "judge")]
    no_judge = verify(rec, texts, rewarder)
    assert [(v.correct, v.by) for v in no_judge] == [(None, "none"), (None, "none")]
    kept, reasons = curate_prompt(rec, [gen(t) for t in texts], no_judge, CurationConfig(), {})
    assert kept == [] and dict(reasons) == {"unverifiable": 2}
    # judge_sources sends even rule-verifiable sources to the judge
    math_rec = {"prompt": "p", "answer": "85", "data_source": "synthetic"}
    forced = verify(math_rec, [GOOD.replace("85", "99")], rewarder, load_judge("tests.pipeline.judges:always_true"),
                    judge_sources=["synthetic"])
    assert (forced[0].correct, forced[0].by) == (True, "judge")


def test_a_failing_judge_rejects_instead_of_crashing(rewarder):
    rec = {"prompt": "p", "answer": "a", "data_source": "trivia"}
    verdicts = verify(rec, ["<think>x</think> a"], rewarder, load_judge("tests.pipeline.judges:broken"))
    assert verdicts[0].correct is None and "judge service is down" in verdicts[0].error
    _, reasons = curate_prompt(rec, [gen("<think>x</think> a")], verdicts, CurationConfig(), {})
    assert dict(reasons) == {"judge_error": 1}


@pytest.mark.parametrize("spec,needle", [
    ("no_colon", "must look like"),
    ("tests.pipeline.nope:f", "cannot be imported"),
    ("tests.pipeline.judges:missing", "cannot be imported"),
    ("tests.pipeline.judges:NOT_CALLABLE", "not callable"),
])
def test_bad_judge_spec_names_the_key(spec, needle):
    with pytest.raises(ValueError, match=needle) as err:
        CurationConfig(judge=spec).validate()
    assert "curation.judge=" in str(err.value)


def test_curation_config_errors_name_the_key():
    with pytest.raises(ValueError, match="curation.samples_per_prompt"):
        CurationConfig(samples_per_prompt=0).validate()
    with pytest.raises(ValueError, match="curation.split"):
        CurationConfig(split="dev").validate()
    with pytest.raises(ValueError, match="curation.filters.format_mode"):
        CurationConfig(filters=FilterConfig(format_mode="xml")).validate()
