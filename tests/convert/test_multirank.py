"""Checkpoints loaded across gloo ranks at TP/PP/EP > 1: logits parity and bit-exact streaming.

The checkpoint is written by one process at TP=PP=EP=1 (session fixture); each spawned rank
builds only its shard at the target layout and reads it back with dist_checkpointing. For
every layout the ranks check:

* logits of the last pipeline stage vs the HF model's (tolerance as in test_roundtrip: the
  only change is that TP splits GEMM reductions and the MoE all-to-all reorders tokens);
* every tensor streamed by ``iter_hf_buckets`` (TP/EP all-gather, PP broadcast) equals the
  original safetensors bit for bit -- on *every* rank, and buckets stay within their bound;
* the same for a model filled straight from HF at that layout (``fill_from_hf``);
* MoE: the FP8 stream equals ``quantize_blockwise`` of the originals.

Two ranks run two to three layouts in one process group (``ParallelDims.build`` rebuilds the
Megatron groups), which keeps the spawn cost to one per family.
"""

from __future__ import annotations

import json

import pytest
import torch

from r1mega.convert import export_hf
from r1mega.convert.verify import hf_logits, random_tokens
from tests.convert import workers
from tests.foundation.dist_utils import run_ranks
from tests.convert.tiny_models import read_all

TOL = 1e-4
LAYOUTS = {  # (tp, pp, ep, etp)
    "qwen2": [(2, 1, 1, 1), (1, 2, 1, 1)],
    "llama": [(2, 1, 1, 1), (1, 2, 1, 1)],
    "deepseek_v3": [(2, 1, 2, 1), (1, 2, 1, 1), (1, 1, 1, 2)],
    "qwen3": [(2, 1, 1, 1), (1, 2, 1, 1)],
    "qwen3_moe": [(2, 1, 2, 1), (1, 2, 1, 1)],
}


def fp8_linear_count(meg) -> int:
    """HF linear weights (each gets a block-scale tensor in the FP8 stream) of a checkpoint."""
    from r1mega.convert import load_model_config
    from r1mega.convert.mappings import MappingOptions, entries

    return sum(len(e.hf) for e in entries(load_model_config(meg), MappingOptions()) if e.fp8)


def reference(hf, path, vocab):
    tokens = random_tokens(vocab, batch=2, seq_len=16, seed=0)
    torch.save({"tokens": tokens, "logits": hf_logits(hf, tokens)}, path)
    return path


def assert_layout_results(results: dict, fp8_count: int = 40) -> None:
    """``fp8_count``: block-scale tensors the FP8 stream must carry (the tiny DeepSeek's linear
    weights: 2 layers' attention, 8 experts and a shared expert)."""
    for rank, per_layout in results.items():
        for res in per_layout:
            where = f"rank {rank} layout (tp, pp, ep, etp)={res['layout']}"
            assert res["stream_mismatches"] == [], where
            assert res["fill_mismatches"] == [], where
            assert res["bucket_ok"], where
            if "fp8_mismatches" in res:
                assert res["fp8_mismatches"] == [] and res["fp8_count"] == fp8_count, where
            if res["parity"] is not None:
                assert res["parity"]["max_abs_diff"] <= TOL, (where, res["parity"])
                assert res["parity"]["top1_agreement"] == 1.0, (where, res["parity"])
    for i in range(len(next(iter(results.values())))):  # the last stage reported each layout
        assert any(per[i]["parity"] is not None for per in results.values())


@pytest.mark.parametrize("family", list(LAYOUTS))
def test_layouts_on_two_ranks(family, converted, tmp_path):
    hf, meg = converted(family)
    ref = reference(hf, tmp_path / "ref.pt", 256)
    assert_layout_results(run_ranks(2, workers.check_layouts, str(hf), str(meg), str(ref), LAYOUTS[family]),
                          fp8_count=fp8_linear_count(meg))


def test_import_under_two_ranks_at_tp2_ep2(converted, tmp_path):
    """The torchrun path of ``import``: each rank fills and saves only its shard."""
    hf, _ = converted("deepseek_v3")
    run_ranks(2, workers.import_at_layout, str(hf), str(tmp_path / "meg"), 2, 1, 2)
    out = read_all(export_hf(tmp_path / "meg", tmp_path / "out"))
    for name, t in read_all(hf).items():
        assert torch.equal(out[name], t), name


@pytest.mark.slow
def test_deepseek_tp2_pp2_ep2_on_four_ranks(converted, tmp_path):
    hf, meg = converted("deepseek_v3")
    ref = reference(hf, tmp_path / "ref.pt", 256)
    assert_layout_results(run_ranks(4, workers.check_layouts, str(hf), str(meg), str(ref), [(2, 2, 2, 1)],
                                    timeout=400))


@pytest.mark.slow
@pytest.mark.parametrize("family,layout", [("qwen3", (2, 2, 1)), ("qwen3_moe", (2, 2, 2))])
def test_qwen3_import_and_export_at_tp2_pp2_on_four_ranks(family, layout, converted, tmp_path):
    """Qwen3 at TP=2/PP=2 and Qwen3-MoE at TP=2/PP=2/EP=2: load, stream, fill and logits at that
    layout; an import run on four ranks at it, exported back bit-exactly by one process and by
    the four ranks (the live-model stream), with the source's config."""
    from r1mega.convert.mappings import architecture_mismatches, model_config_from_hf

    hf, meg = converted(family)
    tp, pp, ep = layout
    ref = reference(hf, tmp_path / "ref.pt", 256)
    assert_layout_results(run_ranks(4, workers.check_layouts, str(hf), str(meg), str(ref), [(tp, pp, ep, 1)],
                                    timeout=400), fp8_count=fp8_linear_count(meg))
    run_ranks(4, workers.import_at_layout, str(hf), str(tmp_path / "meg4"), tp, pp, ep, timeout=400)
    run_ranks(4, workers.export_at_layout, str(tmp_path / "meg4"), str(tmp_path / "out4"), tp, pp, ep, timeout=400)
    original = read_all(hf)
    source_cfg = model_config_from_hf(json.loads((hf / "config.json").read_text()))
    for out in (export_hf(tmp_path / "meg4", tmp_path / "out"), tmp_path / "out4"):
        exported = read_all(out)
        assert set(exported) == set(original), out
        assert all(torch.equal(exported[n], t) for n, t in original.items()), out
        out_cfg = model_config_from_hf(json.loads((out / "config.json").read_text()))
        assert architecture_mismatches(source_cfg, out_cfg) == [], out
