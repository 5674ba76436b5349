"""The Transformer Engine spec on a GPU: its names, grouped-GEMM experts, and checkpoints
shared with the local spec (skipped without CUDA; run through the device tool).

On a GPU with TE, ``spec: auto`` builds TE layers, so :func:`import_hf` fills the TE names of
the mapping (fused layer-norm weights, duplicated MLA down projections, ``TEGroupedMLP``
``weight{i}``), and a checkpoint written by the local spec must load into a TE model and vice
versa. Everything is checked bit-exactly against the HF tensors; logits against transformers
with test_roundtrip's GPU tolerance (TE's fp32 GEMMs run in TF32; observed <= 1.6e-3).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tests.convert.tiny_models import make_hf, read_all

pytestmark = pytest.mark.gpu


def _stream_equals_hf(chunk, cfg, hf) -> list[str]:
    from r1mega.convert import iter_hf_tensors

    original = read_all(hf)
    streamed = {n: t.cpu() for n, t in iter_hf_tensors(chunk, cfg)}
    bad = sorted(set(streamed) ^ set(original))
    return bad + [n for n in set(streamed) & set(original) if not torch.equal(streamed[n], original[n])]


@pytest.mark.parametrize("grouped_gemm", [False, True])
def test_te_import_export_and_parity(tmp_path, grouped_gemm):
    from r1mega.convert import export_hf, import_hf, verify
    from r1mega.convert.hf_io import HFReader
    from r1mega.convert.importer import resolve_model_config

    hf = make_hf("deepseek_v3", tmp_path / "hf")
    cfg = dataclasses.replace(resolve_model_config(HFReader(hf), None, None), moe_grouped_gemm=grouped_gemm)
    import_hf(hf, tmp_path / "meg", model_config=cfg)
    out = read_all(export_hf(tmp_path / "meg", tmp_path / "out"))
    assert all(torch.equal(out[n], t) for n, t in read_all(hf).items())
    result = verify(hf, tmp_path / "meg")
    assert result["max_abs_diff"] <= 3e-3 and result["top1_agreement"] == 1.0, result


@pytest.mark.parametrize("family", ["deepseek_v3", "qwen2"])
def test_local_and_te_checkpoints_load_into_each_other(tmp_path, family):
    from r1mega.convert import import_hf, latest_iteration_dir, load_model_config, rank_entries
    from r1mega.convert.hf_io import HFReader
    from r1mega.convert.importer import resolve_model_config
    from r1mega.convert.megatron_io import build_chunk, load_model, setup

    hf = make_hf(family, tmp_path / "hf")
    for written, read in (("local", "te"), ("te", "local")):
        meg = tmp_path / f"meg_{written}"
        cfg = dataclasses.replace(resolve_model_config(HFReader(hf), None, None), spec=written)
        import_hf(hf, meg, model_config=cfg)
        other = dataclasses.replace(load_model_config(meg), spec=read)
        chunk = build_chunk(other, setup(other), "fp32")
        load_model(chunk, latest_iteration_dir(meg))
        names = {n for _, n, _ in rank_entries(chunk, other)}
        params = {k for k in chunk.state_dict() if not k.endswith("_extra_state")}
        assert names == params, (written, read, sorted(names ^ params)[:5])
        assert _stream_equals_hf(chunk, other, hf) == [], (written, read)


@pytest.mark.parametrize("grouped_gemm", [False, True])
def test_te_mtp_import_export_and_parity(tmp_path, grouped_gemm):
    """The MTP block of the TE spec (TENorm norms, TEColumnParallelLinear ``eh_proj``, the last
    decoder layer's TE spec): import, bit-exact export, names, main and MTP logits; and a
    local-spec MTP checkpoint loads into the TE model."""
    from r1mega.convert import export_hf, import_hf, latest_iteration_dir, load_model_config, rank_entries, verify
    from r1mega.convert.hf_io import HFReader
    from r1mega.convert.importer import resolve_model_config
    from r1mega.convert.megatron_io import build_chunk, load_model, setup
    from r1mega.convert.verify import compare, random_tokens
    from tests.convert.tiny_models import add_mtp_layers

    hf = make_hf("deepseek_v3", tmp_path / "hf")
    add_mtp_layers(hf)
    base = resolve_model_config(HFReader(hf), None, None)
    assert base.mtp_num_layers == 1
    cfg = dataclasses.replace(base, moe_grouped_gemm=grouped_gemm, spec="te")
    import_hf(hf, tmp_path / "meg", model_config=cfg)
    out = read_all(export_hf(tmp_path / "meg", tmp_path / "out"))
    original = read_all(hf)
    assert set(out) == set(original) and all(torch.equal(out[n], t) for n, t in original.items())
    result = verify(hf, tmp_path / "meg")
    assert result["max_abs_diff"] <= 3e-3 and result["top1_agreement"] == 1.0, result

    import_hf(hf, tmp_path / "meg_local", model_config=dataclasses.replace(base, spec="local"))
    te = dataclasses.replace(load_model_config(tmp_path / "meg_local"), spec="te", moe_grouped_gemm=grouped_gemm)
    chunk = build_chunk(te, setup(te), "fp32")
    load_model(chunk, latest_iteration_dir(tmp_path / "meg_local"))
    names = {n for _, n, _ in rank_entries(chunk, te)}
    params = {k for k in chunk.state_dict() if not k.endswith("_extra_state")}
    assert names == params and any(n.startswith("mtp.") for n in names), sorted(names ^ params)[:5]
    assert _stream_equals_hf(chunk, te, hf) == []
    try:
        from transformers.modeling_layers import MtpModel  # (transformers >= 5.23)
    except ImportError:
        MtpModel = None
    if not hasattr(MtpModel, "forward_layer"):  # 5.17 has an MtpModel without the per-layer API
        pytest.skip("this transformers has no MtpModel.forward_layer: MTP logits not compared")
    from tests.convert.mtp_support import hf_mtp_logits, megatron_mtp_logits

    tokens = random_tokens(te.vocab_size, batch=2, seq_len=16)
    mtp = compare(hf_mtp_logits(hf, tokens), megatron_mtp_logits(chunk, tokens, te.vocab_size))
    assert mtp["max_abs_diff"] <= 3e-3 and mtp["top1_agreement"] == 1.0, mtp
