"""HF safetensors -> r1mega Megatron checkpoint (``iter_0000000``), atomically.

Steps (all ranks, when run under torchrun; one process otherwise):

1. read ``config.json`` -> :class:`ModelConfig` (optionally checked against a YAML model
   config: architecture fields must agree, training choices such as ``moe_grouped_gemm`` come
   from the YAML);
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
import shutil
from pathlib import Path
from typing import Optional

from r1mega.convert import layout
from r1mega.convert.hf_io import HFReader
from r1mega.convert.load_hf import check_hf_tensors, chunk_plan, hf_local_tensor, mapping_options
from r1mega.convert.mappings import architecture_mismatches, entries, model_config_from_hf
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
    final = ckpt_layout.iteration_dir(out, 0)
    if final.exists():
        raise ValueError(f"{final} already exists; choose an empty --megatron-path")
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
