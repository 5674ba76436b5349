"""The Hugging Face model directory vLLM starts from: config.json and tokenizer, no weights.

vLLM builds its model from ``config.json`` with ``load_format="dummy"`` (random weights, no
checkpoint read); the real weights arrive through the bridge right after. The config is
r1mega's own HF translation (:func:`r1mega.convert.hf_config_from_model`, the same writer the
exporter uses), so DeepSeek-V3 configs carry ``topk_method: noaux_tc`` and
``scoring_func: sigmoid`` (without them vLLM builds no ``e_score_correction_bias``).
Added here: the tokenizer's special ids, the serving dtype, and for FP8 serving DeepSeek's
``quantization_config`` (e4m3, 128x128 weight blocks, dynamic activation scales).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from r1mega.models.config import ModelConfig

FP8_QUANTIZATION = {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                    "weight_block_size": [128, 128]}


def vllm_hf_config(model_cfg: ModelConfig, tokenizer, fp8: bool = False, dtype: str = "bfloat16") -> dict:
    from r1mega.convert import hf_config_from_model

    out = hf_config_from_model(model_cfg, dtype=dtype)
    for key in ("eos_token_id", "bos_token_id", "pad_token_id"):
        value = getattr(tokenizer, key, None)
        if value is not None:
            out[key] = int(value)
    if fp8:
        out["quantization_config"] = dict(FP8_QUANTIZATION)
    return out


def write_model_dir(path: str | Path, model_cfg: ModelConfig, tokenizer, fp8: bool = False,
                    dtype: str = "bfloat16") -> Path:
    """Write ``config.json`` and the tokenizer files into ``path`` (atomically per file)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    cfg = vllm_hf_config(model_cfg, tokenizer, fp8=fp8, dtype=dtype)
    tmp = path / "config.json.tmp"
    tmp.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path / "config.json")
    tokenizer.save_pretrained(str(path))
    return path
