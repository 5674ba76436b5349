"""The engine-independent pieces of r1mega.rollout.base."""

from r1mega.data.tokenizer import load_tokenizer
from r1mega.rollout.base import Generation, SamplingParams
from r1mega.rollout.config import RolloutConfig


def test_decoded_drops_only_the_final_eos_of_a_stopped_response():
    tok = load_tokenizer()
    ids = tok("12 + 7", add_special_tokens=False)["input_ids"]
    eos = tok.eos_token_id
    stopped = Generation.decoded([1], [*ids, eos], [0.0] * (len(ids) + 1), True, tok)
    assert stopped.finish_reason == "stop" and stopped.token_ids[-1] == eos
    assert stopped.text == tok.decode(ids, skip_special_tokens=False)
    cut = Generation.decoded([1], [*ids, eos], [0.0] * (len(ids) + 1), False, tok)
    assert cut.truncated and cut.text == tok.decode([*ids, eos], skip_special_tokens=False)


def test_sampling_params_from_config():
    r = RolloutConfig(temperature=0.7, top_p=0.9, top_k=5, max_tokens=33, stop=["</answer>"])
    p = SamplingParams.from_config(r, seed=11)
    assert p == SamplingParams(0.7, 0.9, 5, 33, ["</answer>"], seed=11)
    assert p.stop is not r.stop
