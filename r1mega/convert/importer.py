"""HF safetensors -> r1mega Megatron checkpoint (``iter_0000000``), atomically.

Steps (all ranks, when run under torchrun; one process otherwise):

1. read ``config.json`` -> :class:`ModelConfig` (optionally checked against a YAML model
   config: architecture fields must agree, training choices such as ``moe_grouped_gemm`` come
   from the YAML);
2. validate the *intended* layout ``--tp/--pp/--ep/--etp`` against the model (divisibility of
   heads, experts, layers...), so a checkpoint is never produced for a layout it cannot serve;
3. check every HF tensor the mapping needs exists (and nothing unknown is present);
4. build the model at the run's layout (TP=PP=EP=1 for one process), fill it tensor by tensor
   (:mod:`r1mega.convert.load_hf`), ``dist_checkpointing.save`` it into
   ``DIR/.iter_0000000.tmp/model``;
5. rank 0 copies tokenizer files to ``DIR/hf_assets``, writes ``r1mega.json`` last, renames
   the directory to ``iter_0000000`` and writes ``latest`` (:func:`layout.commit_iteration`).

A failure anywhere before step 5 leaves no ``iter_0000000`` and no ``latest``.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Optional

from r1mega.convert import layout
from r1mega.convert.hf_io import HFReader
from r1mega.convert.load_hf import check_hf_tensors, fill_from_hf, mapping_options
from r1mega.convert.mappings import architecture_mismatches, model_config_from_hf
from r1mega.convert.megatron_io import barrier, build_chunk, rank, resolve_layout, save_model, setup
from r1mega.models.config import ModelConfig


def default_dtype(reader: HFReader) -> str:
    """bf16 for bf16 and FP8 checkpoints, fp32 otherwise."""
    declared = reader.config.get("dtype") or reader.config.get("torch_dtype") or "float32"
    return "bf16" if declared == "bfloat16" or reader.is_quantized() else "fp32"


def resolve_model_config(reader: HFReader, override: Optional[ModelConfig], name: Optional[str]) -> ModelConfig:
    """The ModelConfig from ``config.json``, or ``override`` after checking it describes it."""
    from_hf = model_config_from_hf(reader.config, name=name or reader.path.name)
    if override is None:
        return from_hf
    diffs = architecture_mismatches(override, from_hf)
    if diffs:
        raise ValueError(f"model config does not match {reader.path}/config.json: " + "; ".join(diffs))
    return dataclasses.replace(override, extra={**from_hf.extra, **override.extra})


def import_hf(
    hf_path: str | Path,
    megatron_path: str | Path,
    *,
    tp: int = 1,
    pp: int = 1,
    ep: int = 1,
    etp: int = 1,
    dtype: Optional[str] = None,
    model_config: Optional[ModelConfig] = None,
    name: Optional[str] = None,
) -> Path:
    """Convert ``hf_path`` into ``megatron_path/iter_0000000``; returns that directory."""
    reader = HFReader(hf_path)
    cfg = resolve_model_config(reader, model_config, name)
    resolve_layout(cfg, tp, pp, ep, etp)  # the intended layout must fit the model
    out = Path(megatron_path)
    final = layout.iteration_dir(out, 0)
    if final.exists():
        raise ValueError(f"{final} already exists; choose an empty --megatron-path")
    dtype = dtype or default_dtype(reader)

    dims = setup(cfg, tp, pp, ep, etp)
    chunk = build_chunk(cfg, dims, dtype)
    opts = mapping_options(cfg, [chunk])
    check_hf_tensors(reader, cfg, opts)
    staging = layout.staging_dir(out, 0)
    if rank() == 0:
        shutil.rmtree(staging, ignore_errors=True)
    barrier()
    fill_from_hf([chunk], cfg, reader, opts)
    reader.close()
    _save(chunk, staging / layout.MODEL_DIR)
    barrier()
    if rank() == 0:
        _publish_assets(Path(hf_path), out)
        meta = {
            "model": dataclasses.asdict(cfg),
            "dtype": dtype,
            "source": {"hf_path": str(Path(hf_path).resolve()), "written_at": dataclasses.asdict(dims)},
            "intended_layout": {"tp": tp, "pp": pp, "ep": ep, "etp": etp},
        }
        layout.commit_iteration(out, 0, meta)
    barrier()
    return final


def _save(chunk, path: Path) -> None:
    """The dist-checkpoint write (a separate function so tests can inject a failure here)."""
    save_model(chunk, path)


def _publish_assets(hf_path: Path, out: Path) -> None:
    tmp = out / f".{layout.HF_ASSETS}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    layout.copy_hf_assets(hf_path, tmp)
    final = out / layout.HF_ASSETS
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
