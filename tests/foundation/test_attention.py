"""r1mega's local core attention against a float64 loop reference (MLA-shaped heads)."""

from __future__ import annotations

import math

import torch

from r1mega.models.attention import SDPACoreAttention, packed_causal_mask


class _Cfg:
    context_parallel_size = 1
    attention_dropout = 0.0
    kv_channels = 8


def reference(q, k, v, allowed, scale):
    """Plain loops in float64: out[s, b, h] = sum_t softmax_t(q.k * scale) v, over allowed t."""
    sq, b, h, _ = q.shape
    out = torch.zeros(sq, b, h, v.shape[-1], dtype=torch.float64)
    for bi in range(b):
        for hi in range(h):
            for i in range(sq):
                ts = [t for t in range(k.shape[0]) if allowed[i][t]]
                logits = torch.stack([(q[i, bi, hi] * k[t, bi, hi]).sum() * scale for t in ts])
                w = torch.softmax(logits, 0)
                out[i, bi, hi] = sum(w[j] * v[t, bi, hi] for j, t in enumerate(ts))
    return out.reshape(sq, b, h * v.shape[-1])


def _module(scale):
    m = SDPACoreAttention.__new__(SDPACoreAttention)
    torch.nn.Module.__init__(m)
    m.softmax_scale, m.dropout_p, m.training = scale, 0.0, False
    return m


def test_causal_with_distinct_key_and_value_dims():
    torch.manual_seed(0)
    q, k, v = torch.randn(6, 2, 3, 12), torch.randn(6, 2, 3, 12), torch.randn(6, 2, 3, 5)
    scale = 1 / math.sqrt(12) * 1.3  # MLA passes a yarn-adjusted scale, not 1/sqrt(d)
    got = _module(scale)(q, k, v, None)
    causal = [[t <= i for t in range(6)] for i in range(6)]
    want = reference(q.double(), k.double(), v.double(), causal, scale)
    assert got.shape == (6, 2, 15)
    assert torch.allclose(got.double(), want, atol=1e-5)  # fp32 softmax of O(1) logits


def test_packed_mask_blocks_cross_document_attention():
    cu = torch.tensor([0, 3, 7, 8], dtype=torch.int32)
    m = packed_causal_mask(cu, 8)
    assert m[4, 3] and not m[3, 4] and not m[4, 2] and m[2, 0] and m[7, 7] and not m[7, 6]

    class P:
        cu_seqlens_q = cu

    torch.manual_seed(1)
    q, k, v = torch.randn(8, 1, 2, 4), torch.randn(8, 1, 2, 4), torch.randn(8, 1, 2, 4)
    got = _module(0.5)(q, k, v, None, packed_seq_params=P())
    want = reference(q.double(), k.double(), v.double(), m.tolist(), 0.5)
    assert torch.allclose(got.double(), want, atol=1e-5)


def test_one_query_decode_matches_reference_and_full_sequence():
    """The KV-cache decode path (one new query, every cached key) with grouped query heads:
    query head h reads kv head h // (heads / kv_heads), as repeat_interleave would map it."""
    torch.manual_seed(2)
    heads, kv_heads, sk = 4, 2, 7
    q = torch.randn(sk, 3, heads, 12)
    k, v = torch.randn(sk, 3, kv_heads, 12), torch.randn(sk, 3, kv_heads, 5)
    scale = 0.37
    m = _module(scale)
    got = m(q[-1:], k, v, None)  # decode: the last position's query alone
    full = m(q, k, v, None)  # prefill of the whole sequence (SDPA path)
    rep = heads // kv_heads
    kk, vv = k.repeat_interleave(rep, dim=2), v.repeat_interleave(rep, dim=2)
    want = reference(q[-1:].double(), kk.double(), vv.double(), [[True] * sk], scale)
    assert got.shape == (1, 3, heads * 5)
    assert torch.allclose(got.double(), want, atol=1e-5)  # fp32 softmax of O(1) logits
    assert torch.allclose(got, full[-1:], atol=1e-6)
