"""The generative judge (curation.judge=generative): a local causal LM compares answer and reference."""

from __future__ import annotations

import pytest
import torch

from r1mega.data.judge import GenerativeJudge, JudgeConfig
from r1mega.rewards import RewardManager
from r1mega.data.curation import CurationConfig
from r1mega.stages.curation import make_judge, verify

Q, REF = "Name the capital of France.", "Paris"
RESPONSES = ["<think>it is the largest city</think> Paris.", "<think>hmm</think> Lyon.", "no think tags: Paris"]


def _llama(path, preference: float = 0.0):
    """A tiny random Llama LM with the bundled tokenizer. With ``preference`` != 0 its blocks are
    silenced (the residual stream is the current token's embedding: a bigram model) and its
    weights are set so that after the prompt's last token it says 'Yes' (> 0) or 'No' (< 0)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from r1mega.data.tokenizer import load_tokenizer

    tok = load_tokenizer()
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=2, num_key_value_heads=2, pad_token_id=tok.pad_token_id))
    if preference:
        text = tok.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False, add_generation_prompt=True)
        last = tok(text, add_special_tokens=False)["input_ids"][-1]
        (y, es), (n, o) = (tok(w, add_special_tokens=False)["input_ids"] for w in ("Yes", "No"))
        with torch.no_grad():
            for layer in model.model.layers:
                layer.self_attn.o_proj.weight.zero_()
                layer.mlp.down_proj.weight.zero_()
            emb, head = model.model.embed_tokens.weight, model.lm_head.weight
            head.zero_()
            for dim, token in enumerate((last, y, n)):
                emb[token] = torch.nn.functional.one_hot(torch.tensor(dim), 32).float()
            head[y, 0], head[n, 0] = 20 * preference, -20 * preference  # after the prompt: Y or N
            head[es, 1] = head[o, 2] = 20.0                             # then 'es' / 'o' for sure
    model.save_pretrained(str(path))
    tok.save_pretrained(str(path))
    return path


@pytest.fixture(scope="module")
def random_judge(tmp_path_factory):
    return GenerativeJudge(_llama(tmp_path_factory.mktemp("judge") / "lm"))


def _reference_log_odds(judge: GenerativeJudge, question, reference, response) -> float:
    """log p(Yes) - log p(No) from full-sequence logits in float64, one reply at a time."""
    prompt = judge.tokenizer(judge.render(question, reference, response), add_special_tokens=False)["input_ids"]
    totals = []
    for word in ("Yes", "No"):
        reply = judge.tokenizer(word, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logits = judge.model(input_ids=torch.tensor([prompt + reply])).logits[0].double()
        logp = logits.log_softmax(-1)
        totals.append(sum(logp[len(prompt) - 1 + i, t].item() for i, t in enumerate(reply)))
    return totals[0] - totals[1]


def test_log_odds_match_the_model_and_decide(random_judge):
    for r in RESPONSES:
        got = random_judge.log_odds(Q, REF, r)
        # Same model, same tokens, float64 softmax on both sides: only summation order differs.
        assert got == pytest.approx(_reference_log_odds(random_judge, Q, REF, r), abs=1e-9)
        assert random_judge(Q, REF, r) is (got > 0.0)
    strict = GenerativeJudge.__new__(GenerativeJudge)
    strict.__dict__.update(random_judge.__dict__, cfg=JudgeConfig(margin=1e9))
    assert strict(Q, REF, RESPONSES[0]) is False


def test_the_judge_sees_question_reference_and_the_final_summary_only(random_judge):
    text = random_judge.render(Q, REF, RESPONSES[0])
    assert Q in text and "Reference answer: Paris" in text and "Answer to grade: Paris." in text
    assert "largest city" not in text and text.endswith("<|assistant|>")
    assert "Answer to grade: no think tags: Paris" in random_judge.render(Q, REF, RESPONSES[2])
    # Different reasoning, same summary: the same verdict margin.
    same = random_judge.log_odds(Q, REF, "<think>another chain of thought</think> Paris.")
    assert same == pytest.approx(random_judge.log_odds(Q, REF, RESPONSES[0]), abs=1e-12)


@pytest.mark.parametrize("preference,verdict", [(1.0, True), (-1.0, False)])
def test_the_verdict_follows_the_model(tmp_path, preference, verdict):
    judge = GenerativeJudge(_llama(tmp_path / "lm", preference))
    for r in RESPONSES:
        # RMSNorm makes a one-hot residual sqrt(32) long, so logit(Y) = -logit(N) = 20 sqrt(32) ~ 113
        # after the prompt and every other logit is 0: log p(Y) ~ 0, log p(N) ~ -40 sqrt(32), and
        # the second tokens ('es' after Y, 'o' after N) are certain. RMSNorm's eps=1e-6 shortens
        # the residual by 16 ppm (~0.004 nats): tolerance 0.01.
        assert judge.log_odds(Q, REF, r) == pytest.approx(40.0 * 32 ** 0.5 * preference, abs=0.01)
        assert judge(Q, REF, r) is verdict


def test_generative_judge_through_curation(tmp_path):
    path = _llama(tmp_path / "lm", 1.0)
    cfg = CurationConfig(judge="generative", judge_model=str(path))
    cfg.validate()
    judge = make_judge(cfg)
    assert isinstance(judge, GenerativeJudge)
    rec = {"id": "t1", "prompt": Q, "answer": REF, "data_source": "trivia"}  # no rule reward for 'trivia'
    with RewardManager({"num_workers": 0}) as rm:
        verdicts = verify(rec, RESPONSES[:2], rm, judge)
    assert [(v.correct, v.by) for v in verdicts] == [(True, "judge"), (True, "judge")]


def test_generative_judge_config_errors(tmp_path):
    with pytest.raises(ValueError, match="curation.judge=generative needs curation.judge_model"):
        CurationConfig(judge="generative").validate()
    with pytest.raises(ValueError, match="curation.judge=generative needs curation.judge_model"):
        CurationConfig(judge="generative", judge_model=str(tmp_path)).validate()
    with pytest.raises(ValueError, match="holds no Hugging Face model"):
        GenerativeJudge(tmp_path)
