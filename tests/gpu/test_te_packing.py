"""Packed (THD) GRPO passes with the Transformer Engine spec on a GPU: the same loss and
gradients as padded rows, for a dense and an MoE model, and a packed GRPO run end to end."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from tests.foundation.dist_utils import run_ranks
from tests.foundation.test_cli import metrics, train

sys.path.insert(0, str(Path(__file__).parents[1] / "rl"))
from packing_worker import padded_and_packed  # noqa: E402

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(importlib.util.find_spec("transformer_engine") is None, reason="needs transformer-engine"),
]


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() * b.double()).sum() / (a.double().norm() * b.double().norm() + 1e-30))


@pytest.mark.parametrize("model", ["tiny_dense", "deepseek_v3_tiny"])
def test_te_packed_matches_padded_in_bf16(model):
    out = run_ranks(1, padded_and_packed, model, "te", "bf16")[0]
    padded, packed = out["padded"], out["packed"]
    # bf16 rounds every GEMM output to 8 bits of mantissa (~4e-3 relative); padded (sbhd, causal
    # mask) and packed (thd, cu_seqlens) run different attention kernels and GEMM shapes, so the
    # two differ at that level, not below. A wrong row mapping, position or mask changes the
    # loss by O(1) and leaves gradients nearly orthogonal (cosine ~0).
    assert packed["loss"] == pytest.approx(padded["loss"], rel=2e-2)
    for name, g in padded["grads"].items():
        if float(g.norm()) < 1e-6:
            continue
        h = packed["grads"][name]
        assert _cosine(g, h) > 0.98, name
        assert float(h.norm()) == pytest.approx(float(g.norm()), rel=0.05), name
    if padded["moe_layers"]:
        assert packed["router_tokens"] < padded["router_tokens"]


def test_packed_grpo_runs_with_te(tmp_path):
    out = train(["stage=r1_zero", "model=deepseek_v3_tiny", "model.spec=te", "trainer.precision.dtype=bf16",
                 "trainer.max_steps=2", "trainer.global_batch_size=64", "trainer.micro_batch_size=16",
                 "trainer.max_tokens_per_microbatch=2048", "rollout.max_tokens=64", "evaluation.k=1",
                 "data.synthetic.num_test=8", "trainer.progress=false", "trainer.plots=false"], tmp_path / "rl")
    assert out.returncode == 0, out.stderr[-3000:]
    rows = metrics(tmp_path / "rl")
    # one update on fresh samples: the training forward's own log-probs are the old policy's
    assert rows[0]["actor_ratio_max"] == 1.0
    assert rows[0]["train_tokens_per_s"] > 0
