"""128x128-block FP8 (DeepSeek's checkpoint format): error bounds and dequantize-on-import.

e4m3 keeps 3 mantissa bits, so rounding a normal value costs at most half a step: 2^-4 of the
value's binade, i.e. <= 2^-4 * |x| after scaling. Below the smallest normal (2^-6) values are
subnormal with a fixed step of 2^-9, so rounding costs at most 2^-10 in scaled units. With the
block scale ``s`` this gives ``|w - deq(w)| <= 2^-4 |w| + 2^-10 s`` element-wise.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from r1mega.convert.fp8 import SCALE_SUFFIX, dequantize_blockwise, quantize_blockwise
from tests.convert.tiny_models import make_hf, read_all


def test_blockwise_error_bound_partial_and_zero_blocks():
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(200, 300, generator=gen) * 0.05
    w[0, 0] = 3.0  # an outlier only affects its own block's scale
    w[128:, 128:256] = 0.0  # an all-zero block
    q, s = quantize_blockwise(w)
    assert q.dtype == torch.float8_e4m3fn and q.shape == w.shape and s.shape == (2, 3)
    assert s[1, 1] == 1.0  # zero block: neutral scale, all-zero values
    scale = s.repeat_interleave(128, 0).repeat_interleave(128, 1)[:200, :300]
    err = (dequantize_blockwise(q, s) - w).abs()
    assert torch.all(err <= 2**-4 * w.abs() + 2**-10 * scale)
    assert torch.equal(dequantize_blockwise(q, s)[128:, 128:256], torch.zeros(72, 128))


def test_scale_shape_mismatch_names_the_scale():
    q, s = quantize_blockwise(torch.randn(130, 10))
    with pytest.raises(ValueError, match="weight_scale_inv"):
        dequantize_blockwise(q, s[:1])


def _quantize_checkpoint(src, dst):
    """A DeepSeek-style FP8 copy of ``src``: every FP8-eligible linear weight as e4m3 + scale."""
    from r1mega.convert.mappings import entries, model_config_from_hf

    cfg_json = json.loads((src / "config.json").read_text())
    eligible = {n for e in entries(model_config_from_hf(cfg_json)) if e.fp8 for n in e.hf}
    tensors, expected = {}, {}
    for name, t in read_all(src).items():
        if name in eligible:
            q, s = quantize_blockwise(t)
            tensors[name], tensors[name + SCALE_SUFFIX] = q, s
            expected[name] = dequantize_blockwise(q, s, torch.bfloat16)
        else:
            tensors[name] = t.to(torch.bfloat16) if "e_score" not in name else t
            expected[name] = tensors[name]
    dst.mkdir()
    save_file(tensors, str(dst / "model.safetensors"), metadata={"format": "pt"})
    cfg_json["quantization_config"] = {"quant_method": "fp8", "fmt": "e4m3", "weight_block_size": [128, 128]}
    (dst / "config.json").write_text(json.dumps(cfg_json))
    return expected, len(eligible)


def test_fp8_checkpoint_is_dequantized_on_import(tmp_path):
    from r1mega.convert import export_hf, import_hf

    expected, n_fp8 = _quantize_checkpoint(make_hf("deepseek_v3", tmp_path / "hf", seed=3), tmp_path / "fp8")
    assert n_fp8 == 40  # 8 linear weights in the dense layer, 5 + 8*3 + 3 in the MoE layer
    import_hf(tmp_path / "fp8", tmp_path / "meg")  # FP8 source -> bf16 parameters by default
    export_hf(tmp_path / "meg", tmp_path / "out")
    out = read_all(tmp_path / "out")
    assert set(out) == set(expected)
    for name, t in expected.items():
        assert out[name].dtype == t.dtype and torch.equal(out[name], t), name
    cfg = json.loads((tmp_path / "out" / "config.json").read_text())
    assert cfg["dtype"] == "bfloat16" and "quantization_config" not in cfg


def test_fp8_scale_missing_names_the_tensor(tmp_path):
    from r1mega.convert.hf_io import HFReader

    (tmp_path / "config.json").write_text("{}")
    save_file({"w": quantize_blockwise(torch.randn(4, 4))[0]}, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match="'w' is FP8 but has no 'w_scale_inv'"):
        HFReader(tmp_path).get("w")
