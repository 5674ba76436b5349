"""Megatron distributed checkpoints, written atomically and resumed exactly.

Layout of a checkpoint directory (:mod:`r1mega.training.ckpt_layout` owns its names, the
commit and the choice of the newest iteration)::

    CKPT/latest                      text: the iteration committed last
    CKPT/iter_0000100/model/         megatron dist_checkpointing of the model (global keys)
    CKPT/iter_0000100/optim/         the optimizer state, sharded the same way
    CKPT/iter_0000100/rng/rank_N.pt  per-rank RNG states (CPU, CUDA, Megatron tracker)
    CKPT/iter_0000100/r1mega.json    model config, parallel layout, scheduler and data
                                     position; "complete": true

Atomicity: every rank writes into ``CKPT/.iter_0000100.tmp``; after a barrier, rank 0 writes
``r1mega.json`` last and renames the directory into place, then replaces ``latest``. A crash at
any point leaves either the previous complete checkpoint or a ``.tmp`` directory that loading
ignores (and the next save removes). A directory without ``"complete": true`` is never loaded.

Dist-checkpointing stores tensors by *global* keys (layer numbers and expert ids are global),
so a checkpoint written at one TP/PP/EP layout loads at another: the model and optimizer are
rebuilt for the new layout and read their own shards. RNG states only carry over at the same
layout and world size (they are per rank); elsewhere they are re-seeded.

The optimizer across layouts. Megatron splits the optimizer into a dense and an expert part
(a ``ChainedOptimizer``) only when expert parameters are sharded over their own groups
(EP > 1), and its non-tensor state (param groups, parameter ids) is numbered per layout. Two
things make a checkpoint resumable elsewhere: tensor keys without the ``chained_N.`` prefix
(``chained_optim_avoid_prefix``), and, when the layout differs, a load that takes only the
sharded tensors (moments, fp32 master weights) from the checkpoint, by key, and keeps the
new layout's own structure and param groups, with the step count restored from the
scheduler (both count successful optimizer steps).
"""

from __future__ import annotations

import dataclasses
import random
import shutil
from pathlib import Path

import torch
import torch.distributed as dist

from r1mega import lifeline
from r1mega.config.errors import ConfigError
from r1mega.training.ckpt_layout import (
    META,
    MODEL_DIR,
    commit_iteration,
    complete_iterations,
    iteration_dir,
    latest_checkpoint,
    read_meta,
    staging_dir,
)

# Megatron's distributed optimizer defaults to a deprecated format that 0.16 can no longer
# write; 'fully_reshardable' stores canonical per-parameter state, loadable at any layout.
OPTIM_METADATA = {"distrib_optim_sharding_type": "fully_reshardable", "chained_optim_avoid_prefix": True}
LEGACY_OPTIM_METADATA = {"distrib_optim_sharding_type": "fully_reshardable"}  # before cross-layout resume


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def _sharded_model_state(chunks: list) -> dict:
    if len(chunks) == 1:
        return chunks[0].sharded_state_dict()
    return {f"chunk{i}": c.sharded_state_dict() for i, c in enumerate(chunks)}


def _rng_state() -> dict:
    from megatron.core import tensor_parallel

    return {
        "python": random.getstate(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() else None,
        "tracker": tensor_parallel.get_cuda_rng_tracker().get_states(),
    }


def _set_rng_state(state: dict) -> None:
    from megatron.core import tensor_parallel

    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
    tensor_parallel.get_cuda_rng_tracker().set_states(state["tracker"])


def save_checkpoint(ckpt_dir: str | Path, iteration: int, tm, extra: dict, keep: int = 2,
                    files: dict | None = None) -> Path:
    """Save model, optimizer, RNG and ``extra`` (scheduler, data position, ...) atomically;
    ``files`` (name -> object, the same on every rank) are written by rank 0 with ``torch.save``
    into the iteration directory before it is committed."""
    from megatron.core import dist_checkpointing

    tmp = _start_staging(ckpt_dir, iteration, ("rng", MODEL_DIR, "optim"))
    chunks = tm.unwrapped()
    model_sd = _sharded_model_state(chunks)
    dist_checkpointing.save(model_sd, str(tmp / MODEL_DIR))
    optim_sd = tm.optimizer.sharded_state_dict(_sharded_model_state(chunks), metadata=OPTIM_METADATA)
    dist_checkpointing.save(optim_sd, str(tmp / "optim"))
    torch.save(_rng_state(), tmp / "rng" / f"rank_{_rank()}.pt")
    if _rank() == 0:
        for name, obj in (files or {}).items():
            torch.save(obj, tmp / name)
    meta = {
        "iteration": iteration,
        "model": dataclasses.asdict(tm.model_cfg),
        "parallel": dataclasses.asdict(tm.dims),
        "scheduler": tm.scheduler.state_dict(),
        "optim_metadata": OPTIM_METADATA,
        **extra,
    }
    return _commit(ckpt_dir, iteration, meta, keep)


def save_model_weights(ckpt_dir: str | Path, tm, iteration: int = 0) -> Path:
    """A model-only checkpoint (no optimizer, no RNG), atomically, loadable at any layout with
    ``trainer.init_from``. Megatron initialises weights per rank, so two layouts built from the
    same seed hold different weights; runs that must be compared across layouts start from one
    such checkpoint."""
    from megatron.core import dist_checkpointing

    tmp = _start_staging(ckpt_dir, iteration, (MODEL_DIR,))
    dist_checkpointing.save(_sharded_model_state(tm.unwrapped()), str(tmp / MODEL_DIR))
    meta = {"iteration": iteration, "model": dataclasses.asdict(tm.model_cfg),
            "parallel": dataclasses.asdict(tm.dims), "weights_only": True}
    return _commit(ckpt_dir, iteration, meta, keep=None)


def _start_staging(ckpt_dir: str | Path, iteration: int, subdirs: tuple) -> Path:
    """A fresh staging directory with ``subdirs`` (made by rank 0), once every rank may write."""
    tmp = staging_dir(ckpt_dir, iteration)
    if _rank() == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        for sub in subdirs:
            (tmp / sub).mkdir(parents=True)
    _barrier()
    lifeline.install_checkpoint_writer_queue()  # Megatron's writer helpers die with this process
    return tmp


def _commit(ckpt_dir: str | Path, iteration: int, meta: dict, keep: int | None) -> Path:
    """After every rank has written: commit on rank 0 (then keep the newest ``keep``)."""
    _barrier()
    if _rank() == 0:
        commit_iteration(ckpt_dir, iteration, meta)
        if keep is not None:
            _prune(ckpt_dir, keep)
    _barrier()
    return iteration_dir(ckpt_dir, iteration)


def _prune(ckpt_dir: str | Path, keep: int) -> None:
    for old in complete_iterations(ckpt_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def load_model_weights(iter_dir: str | Path, chunks: list) -> None:
    """Load only the model weights (any layout) into unwrapped ``chunks``."""
    from megatron.core import dist_checkpointing

    iter_dir = Path(iter_dir)
    if not read_meta(iter_dir):
        raise ValueError(f"{iter_dir} is not a complete r1mega checkpoint (no {META} with complete=true)")
    sharded = _sharded_model_state(chunks)
    state = dist_checkpointing.load(sharded, str(iter_dir / MODEL_DIR))
    parts = [state] if len(chunks) == 1 else [state[f"chunk{i}"] for i in range(len(chunks))]
    for chunk, part in zip(chunks, parts):
        _load_tolerating_extra_state(chunk, part, iter_dir)


def _load_tolerating_extra_state(module, state: dict, where: Path) -> None:
    """Strict load, except for Transformer Engine's ``_extra_state`` (FP8 metadata) entries,
    which a checkpoint written with the local spec cannot have (and vice versa)."""
    from megatron.core.transformer.module import Float16Module

    if isinstance(module, Float16Module):  # bf16/fp16 wrapper: its load_state_dict returns None
        module = module.module
    result = module.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("_extra_state")]
    unexpected = [k for k in result.unexpected_keys if not k.endswith("_extra_state")]
    if missing or unexpected:
        raise ValueError(f"checkpoint {where} does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}")


def policy_checkpoint(init_from: str | Path) -> Path:
    """The newest complete checkpoint under ``trainer.init_from``; a ConfigError naming it otherwise."""
    source = latest_checkpoint(init_from)
    if source is None:
        raise ConfigError(f"trainer.init_from={str(init_from)!r} holds no complete checkpoint")
    return source


def load_policy(init_from: str | Path, chunks: list) -> Path:
    """Load the weights under ``trainer.init_from`` (any layout) into unwrapped ``chunks``;
    the iteration directory they came from."""
    source = policy_checkpoint(init_from)
    load_model_weights(source, chunks)
    return source


def init_from(init_from: str | Path, tm) -> Path:
    """Start training from another run's weights (model only, any layout).

    The optimizer's fp32 main parameters (bf16 training, distributed optimizer) were copied
    from the model when it was built; ``reload_model_params`` re-copies them from the loaded
    weights, or the first step would write the old initialisation back into the model.
    """
    source = load_policy(init_from, tm.unwrapped())
    tm.optimizer.reload_model_params()
    return source


def load_checkpoint(iter_dir: str | Path, tm) -> dict:
    """Restore model, optimizer, scheduler and (at the same layout) RNG; return the metadata."""
    from megatron.core import dist_checkpointing

    iter_dir = Path(iter_dir)
    meta = read_meta(iter_dir)
    if meta is None:
        raise ValueError(f"{iter_dir} is not a complete r1mega checkpoint")
    if meta.get("weights_only"):
        raise ValueError(f"{iter_dir} holds model weights only; start from it with trainer.init_from, not resume")
    chunks = tm.unwrapped()
    load_model_weights(iter_dir, chunks)
    same_layout = meta.get("parallel") == dataclasses.asdict(tm.dims)
    metadata = meta.get("optim_metadata", LEGACY_OPTIM_METADATA)
    requested = tm.optimizer.sharded_state_dict(_sharded_model_state(chunks), is_loading=True, metadata=metadata)
    if same_layout:
        tm.optimizer.load_state_dict(dist_checkpointing.load(requested, str(iter_dir / "optim")))
    elif not metadata.get("chained_optim_avoid_prefix"):
        raise ValueError(f"{iter_dir} was written at layout {meta.get('parallel')} in an optimizer format that "
                         "only loads at that layout; resume there, or start from its weights with trainer.init_from")
    else:
        _load_optimizer_tensors(requested, iter_dir / "optim", meta["scheduler"]["num_steps"])
        tm.optimizer.load_state_dict(requested)
    tm.scheduler.load_state_dict(meta["scheduler"])
    rng_file = iter_dir / "rng" / f"rank_{_rank()}.pt"
    if same_layout and rng_file.exists():
        _set_rng_state(torch.load(rng_file, weights_only=False))
    return meta


class _Slot:
    """Placeholder for a sharded tensor while it is loaded under a flat key."""

    def __init__(self, key: str):
        self.key = key


def _load_optimizer_tensors(requested: dict, optim_dir: Path, step: int) -> None:
    """Fill ``requested`` (this layout's optimizer sharded state dict) in place: every sharded
    tensor from the checkpoint by its global key, every other entry as this layout built it,
    the step counts set to ``step``."""
    from megatron.core import dist_checkpointing
    from megatron.core.dist_checkpointing.dict_utils import dict_list_map_inplace
    from megatron.core.dist_checkpointing.mapping import LocalNonpersistentObject, ShardedBase

    flat: dict = {}

    def stash(x):
        if isinstance(x, ShardedBase):
            key = f"__r1mega_{len(flat)}"
            flat[key] = x
            return _Slot(key)
        return x.unwrap() if isinstance(x, LocalNonpersistentObject) else x

    dict_list_map_inplace(stash, requested)
    loaded = dist_checkpointing.load(flat, str(optim_dir))
    dict_list_map_inplace(lambda x: loaded[x.key] if isinstance(x, _Slot) else x, requested)
    _set_step(requested, step)


def _set_step(sd, step: int) -> None:
    """Put the optimizer step into every torch-optimizer state dict inside ``sd`` (Megatron's
    ``common_step`` for per-parameter steps, ``step`` of param groups for fused Adam)."""
    if isinstance(sd, dict):
        if isinstance(sd.get("param_groups"), list):
            for group in sd["param_groups"]:
                group["step"] = step
            if isinstance(sd.get("state"), dict):
                sd["state"]["common_step"] = torch.tensor(float(step))
        for value in sd.values():
            _set_step(value, step)
    elif isinstance(sd, list):
        for value in sd:
            _set_step(value, step)
