"""Preference reward model scoring and per-source reward routing (stage all_scenario_rl)."""

from __future__ import annotations

import pytest

from r1mega.config.all_scenario import AllScenarioConfig, RewardModelConfig
from r1mega.data import general_prompts
from r1mega.rewards import RewardManager
from r1mega.rm.router import RewardRouter
from r1mega.rm.scorer import RewardModelScorer


def _save_classifier(path, num_labels=1):
    """A tiny random Llama classifier saved the way any Hugging Face reward model is."""
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from r1mega.data.tokenizer import load_tokenizer

    tok = load_tokenizer()
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=2, num_labels=num_labels, pad_token_id=tok.pad_token_id)
    LlamaForSequenceClassification(cfg).save_pretrained(str(path))
    tok.save_pretrained(str(path))
    return path


@pytest.fixture(scope="module")
def rm_dir(tmp_path_factory):
    return _save_classifier(tmp_path_factory.mktemp("rm") / "rm")


@pytest.fixture(scope="module")
def scorer(rm_dir):
    return RewardModelScorer(rm_dir, RewardModelConfig(batch_size=3))


def test_helpfulness_sees_the_summary_only(scorer):
    p = "Write one sentence about the number 7."
    a, b, c = scorer.score([p] * 3, ["<think>seven is odd</think> Seven is prime.",
                                     "<think>something else entirely, longer</think> Seven is prime.",
                                     "<think>seven is odd</think> Seven has two digits in binary? No, three."])
    assert a == b != c
    assert scorer.score([p], ["no think tags at all"]) == [-1.0]  # no_summary_reward
    assert scorer.score([p], ["<think>x</think>   "]) == [-1.0]


def test_batched_scores_equal_one_at_a_time(scorer):
    prompts = ["Describe red.", "Give one tip about a map.", "Write about 3.", "Describe blue.", "x"]
    resp = ["<think>r</think> Red is warm.", "<think>m</think> Fold it along the creases, always.",
            "<think>t</think> Three.", "<think>b</think> Blue is the colour of a clear sky at noon.", "none"]
    batched = scorer.score(prompts, resp)
    single = [scorer.score([p], [r])[0] for p, r in zip(prompts, resp)]
    assert batched == pytest.approx(single, abs=1e-5)


def test_completion_scope_and_scale(rm_dir):
    s = RewardModelScorer(rm_dir, RewardModelConfig(scope="completion", scale=2.0))
    base = RewardModelScorer(rm_dir, RewardModelConfig(scope="completion"))
    batch = ["<think>a</think> Same.", "<think>b b b</think> Same."]
    x, y = s.score(["p", "p"], batch)
    assert x != y  # completion scope: the reasoning differs, so the scores do
    # Same batch for both scorers: a batch of 1 pads differently and moves float32 sums by ~1e-6
    # relative (test_batched_scores_equal_one_at_a_time), which would blur what is checked here.
    bx, by = base.score(["p", "p"], batch)
    assert (x, y) == pytest.approx((2.0 * bx, 2.0 * by), rel=1e-6)


def test_reward_model_must_have_one_label(tmp_path):
    with pytest.raises(ValueError, match="num_labels=2"):
        RewardModelScorer(_save_classifier(tmp_path / "two", num_labels=2), RewardModelConfig())
    with pytest.raises(ValueError, match="holds no Hugging Face model"):
        RewardModelScorer(tmp_path, RewardModelConfig())


def test_router_sends_each_source_to_its_scorer_in_order(scorer):
    cfg = AllScenarioConfig(routing={"general": "reward_model", "synthetic": "rules"}, format_weight=0.5)
    good = "<think>8 + 9 = 17</think> The answer is \\boxed{17}."
    items = [
        {"completion": good, "answer": "17", "data_source": "synthetic", "prompt": "Compute 8 + 9."},
        {"completion": "<think>hm</think> Seven is prime.", "data_source": "general", "prompt": "About 7."},
        {"completion": "Seven is prime.", "data_source": "general", "prompt": "About 7."},
        {"completion": good, "answer": "17", "data_source": "math", "prompt": "Compute 8 + 9."},  # unlisted: rules
        {"completion": good, "data_source": "general"},  # no prompt: an error result, not an exception
    ]
    with RewardRouter(RewardManager({"num_workers": 0}), scorer, cfg) as router:
        out = router.score_batch(items)
    assert out[0].components == {"math_accuracy": 1.0, "format": 1.0} and out[0].reward == 2.0
    pref = scorer.score(["About 7."], ["<think>hm</think> Seven is prime."])[0]
    assert out[1].components == {"preference": pytest.approx(pref), "format": 1.0}
    assert out[1].reward == pytest.approx(pref + 0.5)
    assert out[2].components == {"preference": -1.0, "format": 0.0} and out[2].reward == -1.0
    assert out[3].components["math_accuracy"] == 1.0
    assert out[4].reward == 0.0 and "prompt" in out[4].error


@pytest.mark.parametrize("change,needle", [
    (dict(routing={"general": "judge"}), "all_scenario.routing.general='judge'"),
    (dict(routing={}), "no 'reward_model' route"),
    (dict(general_fraction=1.0), "all_scenario.general_fraction"),
    (dict(reward_model=RewardModelConfig(scope="cot")), "all_scenario.reward_model.scope"),
])
def test_all_scenario_config_errors_name_the_key(change, needle):
    cfg = AllScenarioConfig(**change)
    with pytest.raises(ValueError, match=needle.replace("(", r"\(")):
        cfg.validate()


def test_general_prompts_are_deterministic_and_mixed_at_the_fraction():
    a, b = general_prompts.bundled(10), general_prompts.bundled(10)
    assert a == b and a[0] == {"id": "general-0", "prompt": "Write one sentence about the number 2.",
                               "data_source": "general"}
    assert len({r["prompt"] for r in general_prompts.bundled(64)}) == 64
    reasoning = [{"prompt": f"q{i}", "data_source": "synthetic"} for i in range(30)]
    mixed = general_prompts.mix(reasoning, a, 0.25)
    assert len(mixed) == 40 and sum(r["data_source"] == "general" for r in mixed) == 10
    assert general_prompts.mix(reasoning, a, 0.0) == reasoning


def test_general_prompt_files(tmp_path):
    f = tmp_path / "g.jsonl"
    f.write_text('{"prompt": "Say hi."}\n\n{"prompt": "Name a fruit.", "data_source": "chat"}\n')
    recs = general_prompts.from_files([f], "general")
    assert [(r["prompt"], r["data_source"]) for r in recs] == [("Say hi.", "general"), ("Name a fruit.", "chat")]
    f.write_text('{"text": "x"}\n')
    with pytest.raises(ValueError, match=r"g.jsonl:1: missing or empty field 'prompt'"):
        general_prompts.from_files([f], "general")
