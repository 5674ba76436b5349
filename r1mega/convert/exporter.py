"""r1mega Megatron checkpoint -> HF safetensors directory, atomically.

Two ways, one output (same tensors, same shard split, same bytes):

* **one process** (no torchrun): nothing is loaded whole. A meta-device model supplies the
  sharded state dict; :class:`~r1mega.convert.ckpt_read.CheckpointSource` reads the
  checkpoint a few tensors at a time (``--read-group-mb``) and converts them with the
  streamer's own code; a dry run over meta tensors first lists every HF tensor's shape and
  dtype, so :class:`~r1mega.convert.hf_io.PlannedShardWriter` writes each tensor straight
  to its place in its shard. Peak memory: one read group plus one tensor's HF pieces.
* **under torchrun**: the checkpoint is loaded into a model built at the given layout (1/world
  of it per rank) and streamed with :func:`~r1mega.convert.export_stream.iter_hf_tensors` --
  the code path the vLLM bridge uses; rank 0 writes through the buffered ``ShardedWriter``
  (one shard of memory), the others only take part in the gathers.

The output directory holds:

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

import torch.distributed as dist

from r1mega.config.errors import InputError
from r1mega.convert import layout
from r1mega.convert.export_stream import iter_hf_tensors
from r1mega.convert.ckpt_read import CheckpointSource
from r1mega.convert.hf_io import PlannedShardWriter, ShardedWriter
from r1mega.convert.load_hf import mapping_options
from r1mega.convert.mappings import hf_config_from_model
from r1mega.convert.megatron_io import DTYPES, barrier, build_chunk, load_model, rank, setup, stored_dtype
from r1mega.training.ckpt_layout import latest_iteration_dir

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
    read_group_bytes: int = 256 * 2**20,
) -> Path:
    """Write the HF checkpoint of ``megatron_path``'s newest iteration to ``hf_path``."""
    iter_dir = latest_iteration_dir(megatron_path)
    cfg = layout.load_model_config(iter_dir)
    out = Path(hf_path)
    if out.exists() and any(out.iterdir()):
        raise InputError(f"{out} exists and is not empty; choose a new --hf-path")
    dtype = stored_dtype(iter_dir)
    dims = setup(cfg, tp, pp, ep, etp)
    alone = not (dist.is_initialized() and dist.get_world_size() > 1)
    chunk = build_chunk(cfg, dims, dtype, meta=alone)
    opts = mapping_options(cfg, [chunk])
    if alone:
        source = CheckpointSource(chunk, cfg, iter_dir, opts, DTYPES[dtype], group_bytes=read_group_bytes)
        stream = source.hf_tensors(fp8)
    else:
        load_model(chunk, iter_dir)
        stream = iter_hf_tensors([chunk], cfg, bucket_bytes=bucket_bytes, fp8=fp8, opts=opts)

    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    writer = None
    if rank() == 0:
        if alone:
            specs = [(n, tuple(t.shape), t.dtype) for n, t in source.hf_tensors(fp8, dry_run=True)]
            writer = PlannedShardWriter(tmp, specs, max_shard_bytes)
        else:
            writer = ShardedWriter(tmp, max_shard_bytes)
    try:
        for name, tensor in stream:
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
        if isinstance(writer, PlannedShardWriter):
            writer.close()
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
