"""Multi-token prediction (DeepSeek-V3 ``num_nextn_predict_layers``) through conversion and use.

The tiny DeepSeek checkpoint gets one MTP layer, ``model.layers.2`` (``tiny_models.
add_mtp_layers``: random tensors, plus the embedding/head copies DeepSeek stores). Checked:

* HF -> Megatron -> HF is bit-exact with the MTP layer (and its copies), at TP=1 and across
  gloo ranks at TP=2/PP=2/EP=2, and the exported ``config.json`` declares it;
* the imported MTP depth computes what transformers' own MTP implementation
  (``MtpModel``, float64) computes, at TP=1 and at TP=2/PP=2/EP=2;
* a forward without labels (RL, decoding, ``verify``) is the main head alone; the SFT forward
  adds ``mtp_loss_scaling_factor`` x the MTP loss over the (shifted) loss mask;
* ``--mtp``: a transformers-written checkpoint (MTP declared, no tensors) imports without MTP
  under ``auto`` (said on stderr; recorded and exported configs say 0 layers), fails under
  ``require`` naming the first missing tensor; ``drop`` removes present MTP layers;
* bad inputs: a model expecting MTP without the tensors fails naming the first missing one;
  an HF copy of the embedding that differs from the embedding is reported.

Tolerances as in test_roundtrip: Megatron runs fp32 against a float64 reference, observed
<= 1e-6 on logits of magnitude ~1.5; TOL = 1e-4. The negative control (transformers' MTP with
the two ``eh_proj`` input halves swapped, i.e. hidden state and embedding exchanged) differs
by ~2.5 > NEG = 3e-2. Loss and gradient comparisons are between two fp32 computations of the
same sums in another order: rtol 1e-5.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil

import pytest
import torch

from r1mega.convert import export_hf, import_hf, latest_iteration_dir, load_model_config, verify
from r1mega.convert.mappings import model_config_from_hf
from r1mega.convert.verify import compare, random_tokens
from tests.convert.mtp_support import hf_mtp_logits, megatron_mtp_logits
from tests.convert.tiny_models import read_all

MTP = "deepseek_v3_mtp"
TOL = 3e-3 if torch.cuda.is_available() else 1e-4
NEG = 3e-2


def _load(meg, **changes):
    from r1mega.convert.megatron_io import build_chunk, load_model, setup

    cfg = dataclasses.replace(load_model_config(meg), **changes)
    chunk = build_chunk(cfg, setup(cfg), "fp32")
    load_model(chunk, latest_iteration_dir(meg))
    return chunk, cfg


def _mtp_names(original: dict, layers: int) -> set:
    """The MTP layer's HF names: the last decoder layer's, renumbered, plus its own six."""
    last, mtp = f"model.layers.{layers - 1}.", f"model.layers.{layers}."
    own = {"enorm", "hnorm", "eh_proj", "shared_head.norm", "embed_tokens", "shared_head.head"}
    return {n.replace(last, mtp, 1) for n in original if n.startswith(last)} | {f"{mtp}{x}.weight" for x in own}


@pytest.mark.parametrize("read_group_bytes", [1, 1 << 30])  # one tensor per read; everything in one read
def test_round_trip_with_mtp_is_bit_exact(converted, tmp_path, read_group_bytes):
    hf, meg = converted(MTP)
    assert load_model_config(meg).mtp_num_layers == 1
    out = export_hf(meg, tmp_path / "out", max_shard_bytes=100_000, read_group_bytes=read_group_bytes)
    original, exported = read_all(hf), read_all(out)
    assert {n for n in original if n.startswith("model.layers.2.")} == _mtp_names(original, 2)
    assert set(exported) == set(original)
    for name, t in original.items():
        assert exported[name].dtype == t.dtype and torch.equal(exported[name], t), name
    out_cfg = json.loads((out / "config.json").read_text())
    assert out_cfg["num_nextn_predict_layers"] == 1 and model_config_from_hf(out_cfg).mtp_num_layers == 1


def test_imported_mtp_layer_computes_what_transformers_computes(converted):
    hf, meg = converted(MTP)
    chunk, cfg = _load(meg)
    tokens = random_tokens(cfg.vocab_size, batch=2, seq_len=16)
    got = megatron_mtp_logits(chunk, tokens, cfg.vocab_size)
    good = compare(hf_mtp_logits(hf, tokens), got)
    assert good["max_abs_diff"] <= TOL and good["top1_agreement"] == 1.0, good
    wrong = compare(hf_mtp_logits(hf, tokens, swap_eh_proj_halves=True), got)
    assert wrong["max_abs_diff"] > NEG, wrong


def test_verify_compares_main_logits_of_an_mtp_model(converted):
    hf, meg = converted(MTP)
    result = verify(hf, meg, batch=2, seq_len=32)
    assert result["max_abs_diff"] <= TOL and result["top1_agreement"] == 1.0, result


def test_forward_without_labels_is_the_main_head_alone(converted):
    """RL log-probs and decoding call the model without labels: the MTP block does not run
    and the logits are bit-identical to those of the same weights built without MTP."""
    _, meg = converted(MTP)
    chunk, cfg = _load(meg)
    plain, _ = _load(meg, mtp_num_layers=0)
    assert chunk.mtp_process and not hasattr(plain, "mtp")
    calls = []
    chunk.mtp.register_forward_hook(lambda *_: calls.append(1))
    tokens = random_tokens(cfg.vocab_size, batch=2, seq_len=16)
    positions = torch.arange(16).expand(2, 16)
    with torch.no_grad():
        logits = chunk(tokens, positions, None)
        assert calls == [] and chunk.config.mtp_num_layers == 1  # skipped, and the config restored
        assert torch.equal(logits, plain(tokens, positions, None))
        chunk(tokens, positions, None, labels=tokens)
    assert calls == [1]


def test_sft_step_adds_the_scaled_mtp_loss_over_the_loss_mask(converted):
    """The SFT forward step (labels and loss_mask): Megatron's MTP loss equals the masked mean
    cross entropy of the MTP logits against the labels one position ahead, and the gradient
    of the MTP parameters is ``mtp_loss_scaling_factor`` times that loss's gradient; a forward
    without labels (GRPO) gives them none."""
    from megatron.core.transformer.multi_token_prediction import MTPLossAutoScaler, MTPLossLoggingHelper

    from r1mega.stages.sft import sft_forward_step

    _, meg = converted(MTP)
    chunk, cfg = _load(meg, mtp_loss_scaling_factor=0.25)
    chunk.train()
    gen = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, cfg.vocab_size, (2, 16), generator=gen)
    labels = torch.randint(0, cfg.vocab_size, (2, 16), generator=gen)
    mask = (torch.rand(2, 16, generator=gen) < 0.6).float()
    batch = {"tokens": tokens, "labels": labels, "loss_mask": mask, "position_ids": torch.arange(16).expand(2, 16)}
    eh_proj = chunk.mtp.layers[0].eh_proj.weight

    MTPLossLoggingHelper.tracker.clear()
    MTPLossAutoScaler.set_loss_scale(torch.tensor(1.0))  # the schedule sets 1 / micro-batches
    out, loss_func = sft_forward_step(scale=1.0)(iter([batch]), chunk)
    loss_func(out)[0].backward()
    sft_grad = eh_proj.grad.clone()
    megatron_mtp_loss = MTPLossLoggingHelper.tracker["values"][0].item()

    chunk.zero_grad()
    captured = {}
    hook = chunk.mtp.register_forward_hook(lambda mod, args, h: captured.update(h=h))
    chunk(tokens, batch["position_ids"], None, labels=labels, loss_mask=mask)
    hook.remove()
    logits = chunk.output_layer(captured["h"].chunk(2, dim=0)[1])[0].transpose(0, 1)[..., : cfg.vocab_size]
    ahead = torch.cat([labels[:, 1:], labels[:, :1]], 1)
    mask_ahead = torch.cat([mask[:, 1:], torch.zeros(2, 1)], 1)
    ce = torch.nn.functional.cross_entropy(logits.reshape(-1, cfg.vocab_size), ahead.reshape(-1), reduction="none")
    reference = (ce * mask_ahead.reshape(-1)).sum() / mask_ahead.sum()
    assert reference.item() == pytest.approx(megatron_mtp_loss, rel=1e-5)
    (0.25 * reference).backward()
    # Same float32 sums in a different order: elementwise rtol fails on entries near zero,
    # so the absolute slack is scaled to the gradient (a wrong scale factor is off by >= 25%).
    assert sft_grad.abs().sum() > 0
    torch.testing.assert_close(sft_grad, eh_proj.grad, rtol=1e-5, atol=1e-5 * sft_grad.abs().max().item())

    chunk.zero_grad()
    chunk(tokens, batch["position_ids"], None).sum().backward()
    assert eh_proj.grad is None or not eh_proj.grad.any()
    MTPLossLoggingHelper.tracker.clear()


def test_model_expecting_mtp_needs_the_tensors_with_mtp_require(converted, tmp_path):
    hf, _ = converted("deepseek_v3")
    cfg = model_config_from_hf(json.loads((hf / "config.json").read_text()))
    missing = r"missing tensor 'model\.layers\.2\.enorm\.weight' \(needed for Megatron mtp\.layers\.0\.enorm\.weight\)"
    with pytest.raises(ValueError, match=missing):  # the YAML model asks for MTP
        import_hf(hf, tmp_path / "a", model_config=dataclasses.replace(cfg, mtp_num_layers=1), mtp="require")
    declared = shutil.copytree(hf, tmp_path / "hf")
    raw = json.loads((declared / "config.json").read_text())
    raw["num_nextn_predict_layers"] = 1  # config.json declares a layer the weights lack
    (declared / "config.json").write_text(json.dumps(raw))
    with pytest.raises(ValueError, match=missing):
        import_hf(declared, tmp_path / "b", mtp="require")
    with pytest.raises(ValueError, match=r"--mtp require: .* declares no multi-token-prediction layers"):
        import_hf(hf, tmp_path / "c", mtp="require")
    with pytest.raises(ValueError, match=r"--mtp='maybe' is not one of"):
        import_hf(hf, tmp_path / "d", mtp="maybe")
    assert not any((tmp_path / d / "iter_0000000").exists() for d in "abcd")


@pytest.fixture(scope="module")
def saved_by_transformers(tmp_path_factory):
    """A DeepSeek-V3 checkpoint as ``save_pretrained`` writes it: the config keeps
    ``num_nextn_predict_layers: 1`` (transformers' default), the weights have no MTP layer."""
    from tests.convert.tiny_models import make_hf

    hf = make_hf("deepseek_v3", tmp_path_factory.mktemp("st") / "hf", num_mtp_layers=1)
    assert json.loads((hf / "config.json").read_text())["num_nextn_predict_layers"] == 1
    assert not any(n.startswith("model.layers.2.") for n in read_all(hf))
    return hf


def test_auto_imports_a_transformers_checkpoint_without_mtp_and_says_so(saved_by_transformers, tmp_path, capfd):
    """``--mtp auto`` (the default): no MTP tensors -> a model without MTP, said on stderr; the
    recorded config, the exported config.json and the weights all agree with that, and the
    logits match transformers'. ``--mtp require`` refuses the same checkpoint."""
    hf = saved_by_transformers
    with pytest.raises(ValueError, match=r"missing tensor 'model\.layers\.2\.enorm\.weight'"):
        import_hf(hf, tmp_path / "req", mtp="require")
    capfd.readouterr()
    import_hf(hf, tmp_path / "meg")
    err = capfd.readouterr().err
    assert "declares 1 multi-token-prediction layer(s)" in err and "['model.layers.2']" in err
    assert "importing 0 MTP layer(s)" in err and "model.mtp_num_layers=0" in err
    assert load_model_config(tmp_path / "meg").mtp_num_layers == 0
    out = export_hf(tmp_path / "meg", tmp_path / "out")
    out_cfg = json.loads((out / "config.json").read_text())
    assert out_cfg["num_nextn_predict_layers"] == 0 and model_config_from_hf(out_cfg).mtp_num_layers == 0
    original, exported = read_all(hf), read_all(out)
    assert set(exported) == set(original) and all(torch.equal(exported[n], t) for n, t in original.items())
    result = verify(hf, tmp_path / "meg", batch=2, seq_len=16)
    assert result["max_abs_diff"] <= TOL and result["top1_agreement"] == 1.0, result


def test_auto_keeps_present_mtp_and_drop_removes_it(converted, tmp_path, capfd):
    """With the tensors present ``auto`` imports the MTP layer silently (the session fixture
    ``deepseek_v3_mtp`` is imported that way); ``drop`` builds none and exports none."""
    hf, meg = converted(MTP)
    assert load_model_config(meg).mtp_num_layers == 1
    capfd.readouterr()
    import_hf(hf, tmp_path / "meg", mtp="drop")
    assert "multi-token-prediction" not in capfd.readouterr().err
    assert load_model_config(tmp_path / "meg").mtp_num_layers == 0
    out = export_hf(tmp_path / "meg", tmp_path / "out")
    assert json.loads((out / "config.json").read_text())["num_nextn_predict_layers"] == 0
    original, exported = read_all(hf), read_all(out)
    assert set(exported) == {n for n in original if not n.startswith("model.layers.2.")}
    assert all(torch.equal(exported[n], original[n]) for n in exported)


def test_differing_embedding_copy_is_reported_and_replaced(converted, tmp_path, caplog):
    """Megatron keeps one embedding: an MTP ``embed_tokens`` that differs from the model's is
    named in a warning, and export writes the model's embedding for both."""
    from safetensors.torch import load_file, save_file

    src, _ = converted(MTP)
    hf = shutil.copytree(src, tmp_path / "hf")
    shard = hf / "model-00002-of-00002.safetensors"
    tensors = load_file(shard)
    tensors["model.layers.2.embed_tokens.weight"] = tensors["model.layers.2.embed_tokens.weight"] + 1e-3
    save_file(tensors, str(shard), metadata={"format": "pt"})
    with caplog.at_level(logging.WARNING, logger="r1mega.convert.load_hf"):
        import_hf(hf, tmp_path / "meg")
    assert "model.layers.2.embed_tokens.weight differs from model.embed_tokens.weight" in caplog.text
    assert "shared_head.head" not in caplog.text
    out = read_all(export_hf(tmp_path / "meg", tmp_path / "out"))
    assert torch.equal(out["model.layers.2.embed_tokens.weight"], out["model.embed_tokens.weight"])
    assert torch.equal(out["model.embed_tokens.weight"], read_all(src)["model.embed_tokens.weight"])


def _reference(hf, path, vocab: int):
    """Main and MTP logits of the HF model on fixed tokens, for the ranks to compare with."""
    from r1mega.convert.verify import hf_logits

    tokens = random_tokens(vocab, batch=2, seq_len=16, seed=0)
    torch.save({"tokens": tokens, "logits": hf_logits(hf, tokens), "mtp_logits": hf_mtp_logits(hf, tokens)}, path)
    return path


def _assert_mtp_layouts(results: dict, meg) -> None:
    """Everything test_multirank checks (stream and fill bit-exact, FP8 stream, main logits),
    plus the MTP logits on the last stage of every layout."""
    from r1mega.convert.mappings import MappingOptions, entries
    from tests.convert.test_multirank import assert_layout_results

    cfg = load_model_config(meg)
    linear = [h for e in entries(cfg, MappingOptions(include_mtp=True)) if e.fp8 for h in e.hf]
    assert any(h.startswith("model.layers.2.") for h in linear)
    assert_layout_results(results, fp8_count=len(linear))
    for i in range(len(next(iter(results.values())))):
        reports = [per[i]["mtp_parity"] for per in results.values() if per[i]["mtp_parity"] is not None]
        assert reports, f"no rank reported MTP logits for layout {i}"
        for res in reports:
            assert res["max_abs_diff"] <= TOL and res["top1_agreement"] == 1.0, res


def test_mtp_layouts_on_two_ranks(converted, tmp_path):
    """TP=2 with EP=2 (the MTP layer's experts and ``eh_proj`` split), and PP=2 (the MTP stage
    holds its own copy of the embedding, filled on import and loaded from the checkpoint)."""
    from tests.convert import workers
    from tests.foundation.dist_utils import run_ranks

    hf, meg = converted(MTP)
    ref = _reference(hf, tmp_path / "ref.pt", 256)
    _assert_mtp_layouts(run_ranks(2, workers.check_layouts, str(hf), str(meg), str(ref),
                                  [(2, 1, 2, 1), (1, 2, 1, 1)]), meg)


@pytest.mark.slow
def test_mtp_tp2_pp2_ep2_on_four_ranks(converted, tmp_path):
    """TP=2/PP=2/EP=2: load, stream, fill and MTP logits at that layout; an import run on the
    four ranks at that layout, exported back bit-exactly by one process and by the four ranks
    (rank 0 -- first stage, no MTP layer -- writes the config)."""
    from tests.convert import workers
    from tests.foundation.dist_utils import run_ranks

    hf, meg = converted(MTP)
    ref = _reference(hf, tmp_path / "ref.pt", 256)
    _assert_mtp_layouts(run_ranks(4, workers.check_layouts, str(hf), str(meg), str(ref), [(2, 2, 2, 1)],
                                  timeout=400), meg)
    run_ranks(4, workers.import_at_layout, str(hf), str(tmp_path / "meg4"), 2, 2, 2, timeout=400)
    run_ranks(4, workers.export_at_layout, str(tmp_path / "meg4"), str(tmp_path / "out4"), 2, 2, 2, timeout=400)
    original = read_all(hf)
    for out in (export_hf(tmp_path / "meg4", tmp_path / "out"), tmp_path / "out4"):
        exported = read_all(out)
        assert set(exported) == set(original), out
        assert all(torch.equal(exported[n], t) for n, t in original.items()), out
        assert json.loads((out / "config.json").read_text())["num_nextn_predict_layers"] == 1, out
