"""r1mega Megatron checkpoint -> HF safetensors directory, atomically.

The newest complete iteration of ``--megatron-path`` is loaded into a model built at this
run's layout (TP=PP=EP=1 for one process; the given layout under torchrun), then streamed
with :func:`~r1mega.convert.export_stream.iter_hf_tensors` -- the same code path the vLLM
bridge uses -- into size-bounded shards. Rank 0 writes; the others only take part in the
gathers. The output directory holds:

* ``model-0000i-of-0000n.safetensors`` + ``model.safetensors.index.json``;
* ``config.json`` from :func:`~r1mega.convert.mappings.hf_config_from_model` (dtype of the
  stored weights; ``quantization_config`` when ``fp8``);
* tokenizer files found in ``hf_assets`` (copied there by import), or in ``tokenizer_from``.

Everything is written into ``OUT.tmp-<pid>`` and renamed to ``OUT`` at the end, so an
interrupted export leaves no ``OUT``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Optional

from r1mega.convert import layout
from r1mega.convert.export_stream import iter_hf_tensors
from r1mega.convert.hf_io import ShardedWriter
from r1mega.convert.load_hf import mapping_options
from r1mega.convert.mappings import hf_config_from_model
from r1mega.convert.megatron_io import barrier, build_chunk, load_model, rank, setup, stored_dtype

HF_DTYPE = {"fp32": "float32", "bf16": "bfloat16"}
FP8_QUANT_CONFIG = {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                    "weight_block_size": [128, 128]}


def export_hf(
    megatron_path: str | Path,
    hf_path: str | Path,
    *,
    tp: int = 1,
    pp: int = 1,
    ep: int = 1,
    etp: int = 1,
    max_shard_bytes: int = 5 * 2**30,
    bucket_bytes: int = 512 * 2**20,
    fp8: bool = False,
    tokenizer_from: Optional[str | Path] = None,
) -> Path:
    """Write the HF checkpoint of ``megatron_path``'s newest iteration to ``hf_path``."""
    iter_dir = layout.latest_iteration_dir(megatron_path)
    cfg = layout.load_model_config(iter_dir)
    out = Path(hf_path)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} exists and is not empty; choose a new --hf-path")
    dtype = stored_dtype(iter_dir)
    dims = setup(cfg, tp, pp, ep, etp)
    chunk = build_chunk(cfg, dims, dtype)
    load_model(chunk, iter_dir)
    opts = mapping_options(cfg, [chunk])

    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    writer = ShardedWriter(tmp, max_shard_bytes) if rank() == 0 else None
    try:
        for name, tensor in iter_hf_tensors([chunk], cfg, bucket_bytes=bucket_bytes, fp8=fp8, opts=opts):
            if writer is not None:
                _write(writer, name, tensor)
        if writer is not None:
            writer.finish()
            _write_config(tmp, cfg, dtype, fp8, mtp=opts.include_mtp)
            _copy_tokenizer(tmp, tokenizer_from or layout.find_hf_assets(megatron_path, iter_dir))
            if out.exists():
                out.rmdir()
            os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    barrier()
    return out


def _write_config(dst: Path, cfg, dtype: str, fp8: bool, mtp: bool) -> None:
    hf_cfg = hf_config_from_model(cfg, dtype=HF_DTYPE[dtype])
    if cfg.family == "deepseek_v3" and not mtp:
        hf_cfg["num_nextn_predict_layers"] = 0  # the Megatron model has no MTP layers to export
    if fp8:
        hf_cfg["quantization_config"] = FP8_QUANT_CONFIG
    (dst / "config.json").write_text(json.dumps(hf_cfg, indent=2, sort_keys=True) + "\n")


def _write(writer: ShardedWriter, name: str, tensor) -> None:
    """Hand one tensor to the shard writer (separate so tests can inject a failure)."""
    writer.add(name, tensor)


def _copy_tokenizer(dst: Path, src: Optional[str | Path]) -> None:
    if src is None:
        return
    src = Path(src)
    for name in layout.TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)
