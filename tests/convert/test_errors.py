"""Bad input fails with a message naming the tensor or field; interrupted conversions never
leave an output that looks complete."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import save_file

from r1mega.convert import export_hf, import_hf, latest_iteration_dir, load_model_config, verify
from r1mega.convert import exporter, importer
from r1mega.training.ckpt_layout import LATEST, iteration_dir, staging_dir
from tests.convert.tiny_models import read_all


@pytest.fixture
def qwen_hf(converted, tmp_path):
    """A private, editable copy of the tiny qwen2 checkpoint."""
    hf, _ = converted("qwen2")
    return shutil.copytree(hf, tmp_path / "hf")


def rewrite(hf, edit) -> None:
    """Apply ``edit(dict_of_tensors)`` to a single-file checkpoint."""
    tensors = read_all(hf)
    edit(tensors)
    for f in hf.glob("*.safetensors"):
        f.unlink()
    save_file(tensors, str(hf / "model.safetensors"), metadata={"format": "pt"})


def test_missing_tensor_is_named(qwen_hf, tmp_path):
    rewrite(qwen_hf, lambda t: t.pop("model.layers.1.mlp.down_proj.weight"))
    with pytest.raises(ValueError, match=r"missing tensor 'model\.layers\.1\.mlp\.down_proj\.weight'"):
        import_hf(qwen_hf, tmp_path / "meg")
    assert not (tmp_path / "meg" / LATEST).exists()


def test_wrong_shape_is_named(qwen_hf, tmp_path):
    rewrite(qwen_hf, lambda t: t.update({"model.layers.0.self_attn.k_proj.weight": torch.zeros(16, 64)}))
    with pytest.raises(ValueError, match=r"wrong shape: .*model\.layers\.0\.self_attn\.k_proj\.weight \(16, 64\)"):
        import_hf(qwen_hf, tmp_path / "meg")


def test_unknown_tensor_is_named(qwen_hf, tmp_path):
    rewrite(qwen_hf, lambda t: t.update({"model.layers.0.mlp.adapter.weight": torch.zeros(2)}))
    with pytest.raises(ValueError, match=r"model\.layers\.0\.mlp\.adapter\.weight"):
        import_hf(qwen_hf, tmp_path / "meg")


def test_unknown_architecture_is_named(qwen_hf, tmp_path):
    cfg = json.loads((qwen_hf / "config.json").read_text())
    cfg.update(model_type="mistral", architectures=["MistralForCausalLM"])
    (qwen_hf / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="unknown architecture: config.json model_type='mistral'"):
        import_hf(qwen_hf, tmp_path / "meg")


def test_layout_that_does_not_fit_the_model_is_named(qwen_hf, tmp_path):
    with pytest.raises(ValueError, match=r"parallel\.tp=3 does not divide model\.num_attention_heads=4"):
        import_hf(qwen_hf, tmp_path / "meg", tp=3)


def test_config_mismatch_in_verify_names_the_field(converted):
    hf_llama, _ = converted("llama")
    _, meg_qwen = converted("qwen2")
    with pytest.raises(ValueError, match=r"describe different models: model\.family: 'qwen2' != 'llama'"):
        verify(hf_llama, meg_qwen)


def test_config_mismatch_with_yaml_model_names_the_field(qwen_hf, tmp_path):
    import dataclasses

    from r1mega.convert.mappings import model_config_from_hf

    wrong = dataclasses.replace(model_config_from_hf(json.loads((qwen_hf / "config.json").read_text())),
                                num_layers=3)
    with pytest.raises(ValueError, match=r"model\.num_layers: 3 != 2"):
        import_hf(qwen_hf, tmp_path / "meg", model_config=wrong)


def test_interrupted_import_leaves_nothing_complete(qwen_hf, tmp_path, monkeypatch):
    out = tmp_path / "meg"

    real_save = importer._save

    def save_then_die(chunk, path, materialize):
        real_save(chunk, path, materialize)  # the shards are all written ...
        raise RuntimeError("killed")  # ... and the process dies before the commit

    monkeypatch.setattr(importer, "_save", save_then_die)
    with pytest.raises(RuntimeError, match="killed"):
        import_hf(qwen_hf, out)
    assert staging_dir(out, 0).is_dir()  # partial data exists, under a name no reader trusts
    assert not iteration_dir(out, 0).exists() and not (out / LATEST).exists()
    with pytest.raises(ValueError, match="no complete r1mega checkpoint"):
        latest_iteration_dir(out)
    with pytest.raises(ValueError, match="no complete r1mega checkpoint"):
        load_model_config(out)
    monkeypatch.undo()
    import_hf(qwen_hf, out)  # a rerun replaces the leftovers and commits
    assert latest_iteration_dir(out) == iteration_dir(out, 0) and not staging_dir(out, 0).exists()


def test_interrupted_export_leaves_no_output(converted, tmp_path, monkeypatch):
    _, meg = converted("llama")
    written = []

    def write_then_die(writer, name, tensor):
        if len(written) == 3:
            raise RuntimeError("killed")
        written.append(name)
        writer.add(name, tensor)

    monkeypatch.setattr(exporter, "_write", write_then_die)
    with pytest.raises(RuntimeError, match="killed"):
        export_hf(meg, tmp_path / "out", max_shard_bytes=1)  # one shard per tensor: files exist
    assert not (tmp_path / "out").exists()
    assert list(tmp_path.iterdir()) == []  # the temporary directory is removed too


def test_export_refuses_a_non_empty_target(converted, tmp_path):
    _, meg = converted("llama")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        export_hf(meg, tmp_path / "out")


def test_incomplete_checkpoint_is_never_loaded(converted, tmp_path):
    _, meg = converted("llama")
    copy = shutil.copytree(meg, tmp_path / "meg")
    meta = json.loads((copy / "iter_0000000" / "r1mega.json").read_text())
    (copy / "iter_0000000" / "r1mega.json").write_text(json.dumps({**meta, "complete": False}))
    with pytest.raises(ValueError, match="no complete r1mega checkpoint"):
        export_hf(copy, tmp_path / "out")
