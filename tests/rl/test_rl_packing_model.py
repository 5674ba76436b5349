"""Packed (THD) and padded micro-batches give the same GRPO loss and gradients through a real
Megatron-Core model, and MoE routers only see real tokens when packed."""

from __future__ import annotations

import pytest

from tests.foundation.dist_utils import run_ranks
from packing_worker import padded_and_packed


@pytest.mark.parametrize("model", ["tiny_dense", "deepseek_v3_tiny"])
def test_packed_loss_and_gradients_equal_padded(model):
    out = run_ranks(1, padded_and_packed, model)[0]
    padded, packed = out["padded"], out["packed"]
    assert packed["micro_batches"] < padded["micro_batches"]  # the budget packs several rows per pass
    # Same tokens, positions and per-row attention; only the fp32 summation layout differs
    # (attention over one packed sequence, GEMMs of other shapes): a few ulps per op, ~1e-6
    # relative after a backward pass. A wrong position, mask or row mapping moves them by O(1).
    assert packed["loss"] == pytest.approx(padded["loss"], rel=1e-5)
    assert padded["grads"].keys() == packed["grads"].keys() and padded["grads"]
    for name, g in padded["grads"].items():
        scale = float(g.abs().max()) + 1e-12
        assert float((packed["grads"][name] - g).abs().max()) <= 1e-4 * scale, name
    if padded["moe_layers"]:
        # every MoE layer routes each token once: padded rows route their padding too
        assert packed["router_tokens"] == packed["moe_layers"] * out["real_tokens"]
        assert padded["router_tokens"] == padded["moe_layers"] * out["padded_tokens"]
        assert out["real_tokens"] < out["padded_tokens"]
