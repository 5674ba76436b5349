"""HF safetensors -> r1mega Megatron checkpoint (``iter_0000000``), atomically.

Steps (all ranks, when run under torchrun; one process otherwise):

1. read ``config.json`` -> :class:`ModelConfig` (optionally checked against a YAML model
   config: architecture fields must agree, training choices such as ``moe_grouped_gemm`` come
   from the YAML), and decide how many multi-token-prediction layers to import
   (:func:`resolve_mtp`, ``--mtp auto|require|drop``); the recorded config says that many,
   so training and export see the model that was imported;
2. validate the *intended* layout ``--tp/--pp/--ep/--etp`` against the model (divisibility of
   heads, experts, layers...), so a checkpoint is never produced for a layout it cannot serve;
3. check every HF tensor the mapping needs exists (and nothing unknown is present);
4. build the model at the run's layout (TP=PP=EP=1 for one process) *on the meta device*
   (shapes, dtypes and sharding metadata, no memory), check every parameter against the
   mapping and the HF headers, and ``dist_checkpointing.save`` its sharded state dict into
   ``DIR/.iter_0000000.tmp/model`` with :func:`~r1mega.convert.stream_save.save_streaming`:
   each parameter's bytes are read from HF, merged and cut to this rank's shard only when the
   writer reaches it, and dropped right after (see that module for why this is sound);
5. rank 0 copies tokenizer files to ``DIR/hf_assets``, writes ``r1mega.json`` last, renames
   the directory to ``iter_0000000`` and writes ``latest`` (:func:`ckpt_layout.commit_iteration`).

A failure anywhere before step 5 leaves no ``iter_0000000`` and no ``latest``.

Memory: one parameter's full tensor plus the HF tensors it is merged from (plus a clone of
the gate or up half of ``linear_fc1``, which Megatron saves as two pieces) -- independent of
model size. On CUDA machines the model is built uninitialised on the GPU instead of on the
meta device (Megatron allocates CUDA parameters explicitly there); host memory stays bounded.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
from pathlib import Path
from typing import Optional

from r1mega.config.errors import InputError
from r1mega.convert import layout
from r1mega.convert.hf_io import HFReader
from r1mega.convert.load_hf import check_hf_tensors, chunk_plan, hf_local_tensor, mapping_options
from r1mega.convert.mappings import architecture_mismatches, entries, model_config_from_hf, mtp_hf_prefixes
from r1mega.convert.megatron_io import barrier, build_chunk, rank, resolve_layout, setup
from r1mega.convert.sharding import rank_layout
from r1mega.convert.stream_save import save_streaming
from r1mega.models.config import ModelConfig
from r1mega.training import ckpt_layout


def default_dtype(reader: HFReader) -> str:
    """bf16 for bf16 and FP8 checkpoints, fp32 otherwise."""
    declared = reader.config.get("dtype") or reader.config.get("torch_dtype") or "float32"
    return "bf16" if declared == "bfloat16" or reader.is_quantized() else "fp32"


def resolve_model_config(reader: HFReader, override: Optional[ModelConfig], name: Optional[str]) -> ModelConfig:
    """The ModelConfig from ``config.json``, or ``override`` after checking it describes it.

    ``override`` may differ in ``mtp_num_layers``: fewer than the checkpoint declares drops the
    rest (skipped, with a log line, by ``check_hf_tensors``); more fails there, naming the first
    missing MTP tensor."""
    from_hf = model_config_from_hf(reader.config, name=name or reader.path.name)
    if override is None:
        return from_hf
    diffs = architecture_mismatches(override, from_hf, ignore=("mtp_num_layers",))
    if diffs:
        raise InputError(f"model config does not match {reader.path}/config.json: " + "; ".join(diffs))
    return dataclasses.replace(override, extra={**from_hf.extra, **override.extra})


MTP_MODES = ("auto", "require", "drop")


def resolve_mtp(cfg: ModelConfig, reader: HFReader, mode: str = "auto") -> ModelConfig:
    """``cfg`` with the multi-token-prediction layers this import builds.

    ``cfg.mtp_num_layers`` is what the checkpoint's ``config.json`` (``num_nextn_predict_layers``)
    or the YAML model config declares. A checkpoint saved by transformers declares MTP layers
    but has no tensors for them (its model class does not build them), so:

    * ``require``: build every declared layer; a missing tensor is an error naming it
      (:func:`~r1mega.convert.load_hf.check_hf_tensors`), and so is declaring none;
    * ``drop``: build none (present MTP tensors are skipped, with a log line);
    * ``auto``: build the declared layers whose tensors the checkpoint has (counted from the
      first; a layer with only some of its tensors still fails naming the first missing one),
      and say on stderr when that is fewer than declared.
    """
    if mode not in MTP_MODES:
        raise InputError(f"--mtp={mode!r} is not one of {MTP_MODES}")
    declared = cfg.mtp_num_layers
    if mode == "drop":
        return dataclasses.replace(cfg, mtp_num_layers=0)
    if mode == "require":
        if not declared:
            raise InputError(f"--mtp require: {reader.path}/config.json declares no multi-token-prediction layers "
                             "(num_nextn_predict_layers=0) and the model config none (model.mtp_num_layers=0)")
        return cfg
    prefixes = mtp_hf_prefixes(cfg, declared)
    names = reader.names()
    found = 0
    for prefix in prefixes:
        if not any(n.startswith(prefix) for n in names):
            break
        found += 1
    if found == declared:
        return cfg
    if rank() == 0 and os.environ.get("RANK", "0") == "0":  # before setup() under torchrun, too
        absent = [p.rstrip(".") for p in prefixes[found:]]
        print(f"r1mega-convert import: {reader.path} declares {declared} multi-token-prediction layer(s) "
              f"(num_nextn_predict_layers / model.mtp_num_layers) but has no tensors under {absent} (as "
              f"transformers' save_pretrained writes it); importing {found} MTP layer(s): the checkpoint "
              f"records model.mtp_num_layers={found}, export writes num_nextn_predict_layers={found}, and "
              f"training from it needs model.mtp_num_layers={found}. Pass --mtp require to fail instead.",
              file=sys.stderr, flush=True)
    return dataclasses.replace(cfg, mtp_num_layers=found)


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
    mtp: str = "auto",
) -> Path:
    """Convert ``hf_path`` into ``megatron_path/iter_0000000``; returns that directory.
    ``mtp``: ``auto``, ``require`` or ``drop`` (:func:`resolve_mtp`)."""
    reader = HFReader(hf_path)
    cfg = resolve_mtp(resolve_model_config(reader, model_config, name), reader, mtp)
    resolve_layout(cfg, tp, pp, ep, etp)  # the intended layout must fit the model
    out = Path(megatron_path)
    final = ckpt_layout.iteration_dir(out, 0)
    if final.exists():
        raise InputError(f"{final} already exists; choose an empty --megatron-path")
    dtype = dtype or default_dtype(reader)

    dims = setup(cfg, tp, pp, ep, etp)
    chunk = build_chunk(cfg, dims, dtype, meta=True)
    opts = mapping_options(cfg, [chunk])
    check_hf_tensors(reader, cfg, opts, compare_copies=rank() == 0)
    plan = chunk_plan(chunk, cfg, reader, entries(cfg, opts))
    staging = ckpt_layout.staging_dir(out, 0)
    if rank() == 0:
        shutil.rmtree(staging, ignore_errors=True)
    barrier()
    _save(chunk, staging / ckpt_layout.MODEL_DIR, _materializer(chunk, cfg, reader, plan))
    reader.close()
    barrier()
    if rank() == 0:
        _publish_assets(Path(hf_path), out)
        meta = {
            "model": dataclasses.asdict(cfg),
            "dtype": dtype,
            "source": {"hf_path": str(Path(hf_path).resolve()), "written_at": dataclasses.asdict(dims)},
            "intended_layout": {"tp": tp, "pp": pp, "ep": ep, "etp": etp},
        }
        ckpt_layout.commit_iteration(out, 0, meta)
    barrier()
    return final


def _materializer(chunk, cfg: ModelConfig, reader: HFReader, plan: dict):
    """``local name -> real tensor`` for :func:`save_streaming`, read from HF on demand."""
    state = chunk.state_dict(keep_vars=True)
    rank_view = rank_layout(chunk, cfg.num_experts)

    def materialize(name: str):
        if name not in plan:
            raise AssertionError(f"the writer asked for {name!r}, which the mapping plan lacks")
        meta = state[name]
        return hf_local_tensor(plan[name], tuple(meta.shape), meta.dtype, rank_view, cfg, reader)

    return materialize


def _save(chunk, path: Path, materialize) -> None:
    """The dist-checkpoint write (a separate function so tests can inject a failure here)."""
    path.mkdir(parents=True, exist_ok=True)
    barrier()
    save_streaming(chunk, path, materialize)


def _publish_assets(hf_path: Path, out: Path) -> None:
    tmp = out / f".{layout.HF_ASSETS}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    layout.copy_hf_assets(hf_path, tmp)
    final = out / layout.HF_ASSETS
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
