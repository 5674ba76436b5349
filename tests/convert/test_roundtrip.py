"""Single-process HF -> Megatron -> HF: bit-exact weights and logits parity for every family.

Tolerances: both sides run fp32 on CPU with the same operations in a different grouping
(fused QKV / gate-up GEMMs, Megatron's vs transformers' RMSNorm and rotary code), so logits
agree to a few fp32 ulps of their magnitude (~1): observed <= 1e-6; TOL = 1e-4 leaves two
orders of margin. On a GPU the TE spec runs its fp32 GEMMs in TF32 (10-bit mantissa):
observed <= 1.6e-3 on an H200, TOL = 3e-3 there. A mapping error moves logits far more: the
negative controls below (other weights: O(1); DeepSeek rope rows left in the wrong order:
0.12) must exceed NEG = 3e-2, ten times the loosest TOL.
"""

from __future__ import annotations

import json

import pytest
import torch

from r1mega.convert import export_hf, import_hf, load_model_config, verify
from r1mega.convert.mappings import architecture_mismatches, model_config_from_hf
from tests.convert.tiny_models import FAMILIES, make_hf, read_all

TOL = 3e-3 if torch.cuda.is_available() else 1e-4
NEG = 3e-2


@pytest.mark.parametrize("family", FAMILIES)
def test_round_trip_is_bit_exact(family, converted, tmp_path):
    hf, meg = converted(family)
    out = export_hf(meg, tmp_path / "out", max_shard_bytes=100_000, read_group_bytes=1)  # several shards, one
    # tensor per checkpoint read (subsets of layer- and expert-stacked keys)
    original, exported = read_all(hf), read_all(out)
    assert set(exported) == set(original)
    for name, t in original.items():
        assert exported[name].dtype == t.dtype and torch.equal(exported[name], t), name
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(original) and len(set(index["weight_map"].values())) > 1
    src_cfg, out_cfg = json.loads((hf / "config.json").read_text()), json.loads((out / "config.json").read_text())
    assert architecture_mismatches(model_config_from_hf(src_cfg), model_config_from_hf(out_cfg)) == []
    assert (out / "tokenizer_config.json").read_text() == (hf / "tokenizer_config.json").read_text()


@pytest.mark.parametrize("family", FAMILIES)
def test_verify_logits_parity(family, converted):
    hf, meg = converted(family)
    result = verify(hf, meg, batch=2, seq_len=32)
    assert result["max_abs_diff"] <= TOL and result["top1_agreement"] == 1.0, result


def test_verify_detects_different_weights(converted, tmp_path):
    """Negative control: the same architecture with other random weights fails the tolerance."""
    _, meg = converted("qwen2")
    other = make_hf("qwen2", tmp_path / "other", seed=1)
    result = verify(other, meg)
    assert result["max_abs_diff"] > NEG and result["top1_agreement"] < 0.5, result


def test_exported_directory_loads_in_transformers(converted, tmp_path):
    """The export is a complete HF checkpoint: transformers loads it and matches Megatron."""
    _, meg = converted("deepseek_v3")
    out = export_hf(meg, tmp_path / "out")
    result = verify(out, meg)
    assert result["max_abs_diff"] <= TOL and result["top1_agreement"] == 1.0


def test_bf16_round_trip_keeps_dtype(tmp_path):
    hf = make_hf("llama", tmp_path / "hf", dtype=torch.bfloat16)
    meg = import_hf(hf, tmp_path / "meg")  # default: the checkpoint's dtype
    assert json.loads((meg / "r1mega.json").read_text())["dtype"] == "bf16"
    out = read_all(export_hf(tmp_path / "meg", tmp_path / "out"))
    for name, t in read_all(hf).items():
        assert out[name].dtype == torch.bfloat16 and torch.equal(out[name], t), name


def test_deepseek_rope_layout_permutation_is_needed_and_right(tmp_path):
    """``rope_interleave: false`` stores the rotary rows in rotate-half order: the mapping
    permutes them (parity holds); pretending they are interleaved breaks parity, which shows
    the permutation (and the identity for the default layout) is what makes logits match."""
    hf = make_hf("deepseek_v3", tmp_path / "hf", rope_interleave=False)
    import_hf(hf, tmp_path / "meg")
    good = verify(hf, tmp_path / "meg")
    assert good["max_abs_diff"] <= TOL and good["top1_agreement"] == 1.0, good
    out = read_all(export_hf(tmp_path / "meg", tmp_path / "out"))
    assert all(torch.equal(out[n], t) for n, t in read_all(hf).items())

    cfg = json.loads((hf / "config.json").read_text())
    cfg["rope_interleave"] = True  # same weights, wrong claim about their layout
    (hf / "config.json").write_text(json.dumps(cfg))
    import_hf(hf, tmp_path / "wrong")
    cfg["rope_interleave"] = False
    (hf / "config.json").write_text(json.dumps(cfg))
    bad = _verify_ignoring_config(hf, tmp_path / "wrong")
    assert bad["max_abs_diff"] > NEG, bad


def _verify_ignoring_config(hf, meg):
    """verify() without the config equality check (the configs differ on purpose)."""
    from r1mega.convert import latest_iteration_dir, load_model_config
    from r1mega.convert.megatron_io import build_chunk, load_model, setup
    from r1mega.convert.verify import compare, hf_logits, megatron_logits, random_tokens

    cfg = load_model_config(meg)
    tokens = random_tokens(cfg.vocab_size)
    chunk = build_chunk(cfg, setup(cfg), "fp32")
    load_model(chunk, latest_iteration_dir(meg))
    return compare(hf_logits(hf, tokens), megatron_logits(chunk, tokens, cfg.vocab_size))


def test_deepseek_mtp_layers_are_skipped_when_the_model_has_none(converted, tmp_path, caplog):
    """A checkpoint declaring MTP layer ``model.layers.{num_layers}`` imported into a model config
    with ``mtp_num_layers: 0``: exactly those tensors are skipped (said in a log line) and export
    declares 0 MTP layers. (Imports with MTP: tests/convert/test_mtp.py.)"""
    import dataclasses
    import logging
    import shutil

    from tests.convert.tiny_models import add_mtp_layers

    hf_src, _ = converted("deepseek_v3")
    hf = shutil.copytree(hf_src, tmp_path / "hf")
    added = add_mtp_layers(hf)
    declared = model_config_from_hf(json.loads((hf / "config.json").read_text()))
    assert declared.mtp_num_layers == 1
    with caplog.at_level(logging.WARNING, logger="r1mega.convert.load_hf"):
        import_hf(hf, tmp_path / "meg", model_config=dataclasses.replace(declared, mtp_num_layers=0))
    assert f"skipping {len(added)} tensor(s)" in caplog.text and "model.layers.2" in caplog.text
    out = export_hf(tmp_path / "meg", tmp_path / "out")
    assert json.loads((out / "config.json").read_text())["num_nextn_predict_layers"] == 0
    exported, original = read_all(out), read_all(hf)
    assert set(exported) == set(original) - set(added)
    assert all(torch.equal(exported[n], original[n]) for n in exported)


def test_qwen3_qk_norms_are_mapped_to_their_own_projection(converted, tmp_path):
    """Negative control for QK-norm: the same Megatron checkpoint against the HF weights with
    each layer's ``q_norm`` and ``k_norm`` exchanged (norm weights are 1 +- 0.1, so only the
    right pairing gives parity; observed 0.11)."""
    import shutil

    from safetensors.torch import load_file, save_file

    src, meg = converted("qwen3")
    hf = shutil.copytree(src, tmp_path / "hf")
    tensors = load_file(hf / "model.safetensors")
    for layer in range(2):
        q, k = (f"model.layers.{layer}.self_attn.{n}_norm.weight" for n in "qk")
        tensors[q], tensors[k] = tensors[k].clone(), tensors[q].clone()
    save_file(tensors, str(hf / "model.safetensors"), metadata={"format": "pt"})
    bad = _verify_ignoring_config(hf, meg)
    assert bad["max_abs_diff"] > NEG, bad


def test_qwen3_moe_top_k_normalisation_is_needed(converted, tmp_path):
    """``norm_topk_prob`` changes the model: the checkpoint imported with it (Megatron's softmax
    over the top-k logits) against transformers without it (the full softmax, unnormalised)
    fails parity (observed 0.12), so the routing the parity test passes is the normalised one;
    imported without it, the checkpoint matches transformers again."""
    import shutil

    src, meg = converted("qwen3_moe")
    assert load_model_config(meg).moe_router_norm_topk
    hf = shutil.copytree(src, tmp_path / "hf")
    raw = json.loads((hf / "config.json").read_text())
    assert raw["norm_topk_prob"] is True
    raw["norm_topk_prob"] = False
    (hf / "config.json").write_text(json.dumps(raw))
    bad = _verify_ignoring_config(hf, meg)
    assert bad["max_abs_diff"] > NEG, bad
    import_hf(hf, tmp_path / "meg")  # without normalisation: Megatron's pre-softmax routing
    assert load_model_config(tmp_path / "meg").moe_router_norm_topk is False
    good = verify(hf, tmp_path / "meg")
    assert good["max_abs_diff"] <= TOL and good["top1_agreement"] == 1.0, good


LLAMA3_OTHER_ROPE = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 4.0, "low_freq_factor": 2.0,
                     "high_freq_factor": 8.0, "original_max_position_embeddings": 2048}


def test_llama3_rope_with_other_original_context_and_frequency_factors(tmp_path):
    """Llama-3 rope scaling with values other than Llama 3.1's (which Megatron-Core 0.16 hard-codes):
    parity with transformers on 512 positions, the values survive export; the same weights with
    Megatron's hard-coded values differ (observed 0.082 at 512 positions, 0.0055 at 32: the
    rescaled wavelengths are long, so the control needs long sequences)."""
    import dataclasses

    from r1mega.convert import latest_iteration_dir
    from r1mega.convert.megatron_io import build_chunk, load_model, setup
    from r1mega.convert.verify import compare, hf_logits, megatron_logits, random_tokens

    hf = make_hf("llama", tmp_path / "hf", rope_parameters=LLAMA3_OTHER_ROPE)
    import_hf(hf, tmp_path / "meg")
    cfg = load_model_config(tmp_path / "meg")
    assert (cfg.rope_original_max_position_embeddings, cfg.rope_low_freq_factor, cfg.rope_high_freq_factor,
            cfg.rope_scaling_factor) == (2048, 2.0, 8.0, 4.0)
    good = verify(hf, tmp_path / "meg", batch=1, seq_len=512)
    assert good["max_abs_diff"] <= TOL and good["top1_agreement"] == 1.0, good
    out = export_hf(tmp_path / "meg", tmp_path / "out")
    assert json.loads((out / "config.json").read_text())["rope_parameters"] == LLAMA3_OTHER_ROPE

    fixed = dataclasses.replace(cfg, rope_original_max_position_embeddings=8192, rope_low_freq_factor=1.0,
                                rope_high_freq_factor=4.0)
    chunk = build_chunk(fixed, setup(fixed), "fp32")
    load_model(chunk, latest_iteration_dir(tmp_path / "meg"))
    tokens = random_tokens(cfg.vocab_size, batch=1, seq_len=512)
    bad = compare(hf_logits(hf, tokens), megatron_logits(chunk, tokens, cfg.vocab_size))
    assert bad["max_abs_diff"] > NEG, bad


def test_llama3_frequencies_with_llama_3_1_values_are_megatrons_own(converted):
    """For Llama 3.1's values the recomputed frequencies are bit-identical to what Megatron's
    RotaryEmbedding computes by itself, so released Llama 3.x models are unchanged."""
    from megatron.core.models.common.embeddings.rotary_pos_embedding import RotaryEmbedding

    from r1mega.convert.megatron_io import build_chunk, setup

    _, meg = converted("llama")
    cfg = load_model_config(meg)
    assert (cfg.rope_original_max_position_embeddings, cfg.rope_low_freq_factor, cfg.rope_high_freq_factor) == (
        8192, 1.0, 4.0)
    chunk = build_chunk(cfg, setup(cfg), "fp32")
    own = RotaryEmbedding(cfg.head_dim, 1.0, rotary_base=int(cfg.rotary_base), rope_scaling=True,
                          rope_scaling_factor=cfg.rope_scaling_factor, use_cpu_initialization=True)
    assert torch.equal(chunk.rotary_pos_emb.inv_freq, own.inv_freq)
