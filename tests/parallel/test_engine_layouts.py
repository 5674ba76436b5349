"""The built-in rollout engine samples the same tokens with the same log-probs at every layout.

One fp32 initialisation (saved at TP=PP=EP=1, resharded on load) is decoded with the same
seeded generator at each layout on two gloo ranks:

- PP=2: each decode step is one micro-batch through the forward-only pipeline schedule, with a
  KV cache per stage; the last stage samples and broadcasts the tokens;
- TP=2 on the MoE model: Megatron needs sequence parallelism there, so the engine decodes
  without a cache on sequences right-padded to a multiple of TP (prompts of odd and even
  length exercise the padding);
- EP=2: experts split over the ranks, decoding in lockstep;
- TP=2 on the dense model without sequence parallelism: KV cache, vocab-sharded logits.

Tolerance 1e-5 on log-probs (magnitude ~6 for a 512-token vocabulary): a layout changes only
the order of fp32 reductions, a few ulps times sqrt(reduction length) ~ 1e-6 on the logits;
a wrong cache slot, a mis-routed hidden state or a padding token seen by a real position
changes log-probs by O(0.1). Tokens must be identical: a sample flips only if the uniform
draw falls within ~1e-6 of a CDF boundary (probability ~1e-6 per token here).
"""

from __future__ import annotations

import pytest

from tests.foundation.dist_utils import run_ranks
from tests.parallel.workers import PROMPTS, decode_at_layout

pytestmark = pytest.mark.slow

MAX_TOKENS = 6
CASES = [
    ("deepseek_v3_tiny", {"pp": 2}),
    ("deepseek_v3_tiny", {"tp": 2}),
    ("deepseek_v3_tiny", {"ep": 2}),
    ("tiny_dense", {"tp": 2, "sequence_parallel": False}),
]


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    refs = {}
    for name in {c[0] for c in CASES}:
        ckpt = tmp_path_factory.mktemp(name)
        refs[name] = (str(ckpt), run_ranks(1, decode_at_layout, name, {}, str(ckpt), MAX_TOKENS)[0])
    return refs


def _check(got, ref):
    assert len(got) == len(ref) == len(PROMPTS)
    for (tok, lp), (rtok, rlp) in zip(got, ref):
        assert tok == rtok
        assert max(abs(a - b) for a, b in zip(lp, rlp)) <= 1e-5


@pytest.mark.parametrize("model,layout", CASES, ids=[f"{m}-{'-'.join(f'{k}{v}' for k, v in l.items())}" for m, l in CASES])
def test_engine_decodes_identically_at_layout(references, model, layout):
    ckpt, ref = references[model]
    assert all(len(t) == MAX_TOKENS for t, _ in ref)  # no early EOS: every step compared
    _check(run_ranks(2, decode_at_layout, model, layout, ckpt, MAX_TOKENS)[0], ref)


def test_no_cache_path_matches_cache(references):
    # The path sequence parallelism uses (recompute the whole prefix each step) at one rank
    # gives the cached decoding's tokens and log-probs.
    ckpt, ref = references["deepseek_v3_tiny"]
    _check(run_ranks(1, decode_at_layout, "deepseek_v3_tiny", {}, ckpt, MAX_TOKENS, False)[0], ref)
