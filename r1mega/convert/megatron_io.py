"""Build, save and load the Megatron side of a conversion at whatever layout this run has.

A conversion runs either as one plain process (the model is built whole: TP=PP=EP=1) or
under ``torchrun`` with ``WORLD_SIZE`` ranks, in which case the requested ``--tp/--pp/--ep/--etp``
layout is built and every rank handles only its shard (memory per process ~ 1/world of the
model). Checkpoints are ``dist_checkpointing`` with global keys either way, so the layout a
checkpoint was written at never constrains the layout it is read at; the embedding and output
layer are saved with ``allow_shape_mismatch`` so even a different vocabulary padding
(``padded_vocab_size(vocab, tp)``) loads.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
import torch.distributed as dist

from r1mega import lifeline
from r1mega.convert.layout import MODEL_DIR
from r1mega.models.config import ModelConfig
from r1mega.models.precision import PrecisionConfig
from r1mega.parallel.config import ParallelConfig
from r1mega.parallel.dims import ParallelDims

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
EXTRA_STATE = "_extra_state"


def intended_world(tp: int, pp: int, ep: int, etp: int) -> int:
    """Smallest world size holding the layout (expert ranks fold into tp*dp)."""
    dense = tp * pp
    expert = ep * etp
    dp = expert // math.gcd(tp, expert)
    return dense * dp


def resolve_layout(cfg: ModelConfig, tp: int = 1, pp: int = 1, ep: int = 1, etp: int = 1,
                   world_size: int | None = None) -> ParallelDims:
    """Validate a layout against the model (ValueError names the parallel.* / model.* key)."""
    world = world_size or intended_world(tp, pp, ep, etp)
    return ParallelDims.resolve(ParallelConfig(tp=tp, pp=pp, ep=ep, etp=etp), world, cfg)


def setup(cfg: ModelConfig, tp: int = 1, pp: int = 1, ep: int = 1, etp: int = 1) -> ParallelDims:
    """Process groups for this run: the given layout under torchrun, TP=PP=EP=1 when alone."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    dims = resolve_layout(cfg, tp, pp, ep, etp, world) if world > 1 else resolve_layout(cfg, world_size=1)
    dims.build()
    return dims


def build_chunk(cfg: ModelConfig, dims: ParallelDims, dtype: str = "fp32", meta: bool = False):
    """This rank's ``GPTModel`` (its pipeline stage), in eval mode, weights uninitialised.

    ``meta=True``: parameters on the meta device (shapes and sharding metadata without
    memory) where that is possible -- on CPU; with CUDA, Megatron and TE allocate parameters
    on the GPU explicitly, so the model is built there, uninitialised, as usual.
    """
    if meta and not torch.cuda.is_available():
        with torch.device("meta"):
            return build_chunk(cfg, dims, dtype)
    from megatron.core import parallel_state as ps

    from r1mega.models.provider import build_model

    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is not one of {sorted(DTYPES)}")
    model = build_model(
        cfg, dims, PrecisionConfig(dtype=dtype),
        pre_process=ps.is_pipeline_first_stage(), post_process=ps.is_pipeline_last_stage(),
        init_weights=False,  # every tensor is overwritten from HF or the checkpoint
    )
    return model.eval()


def save_model(chunk, path: str | Path) -> None:
    """``dist_checkpointing.save`` of the chunk's sharded state dict (all ranks call this)."""
    from megatron.core import dist_checkpointing

    Path(path).mkdir(parents=True, exist_ok=True)
    barrier()
    lifeline.install_checkpoint_writer_queue()
    dist_checkpointing.save(chunk.sharded_state_dict(), str(path))


def load_model(chunk, iter_dir: str | Path) -> None:
    """Read the chunk's shards from ``iter_dir/model`` (written at any layout, by either spec).

    Every tensor of the model must be there, and the checkpoint may hold no tensor the model
    lacks, with two exceptions: ``_extra_state`` (Transformer Engine modules keep their FP8
    metadata in it and the local spec has none, so a checkpoint written by one spec lacks the
    other's; the modules then keep their defaults), and the multi-token-prediction layers
    (``mtp.*``) of a checkpoint loaded into a model built without them (dropped, as training's
    ``init_from`` does; verify and the main-model logits do not use them).
    """
    from megatron.core import dist_checkpointing
    from megatron.core.dist_checkpointing.validation import StrictHandling

    path = Path(iter_dir) / MODEL_DIR
    if not path.is_dir():
        raise ValueError(f"{iter_dir} has no {MODEL_DIR}/ directory (not an r1mega checkpoint iteration)")
    # Megatron's names: "missing" = in the checkpoint, not asked for (all ranks together);
    # "unexpected" = asked for by this rank, not in the checkpoint. Keys may carry "/shard_i_n".
    state, ckpt_only, model_only = dist_checkpointing.load(chunk.sharded_state_dict(), str(path),
                                                           strict=StrictHandling.RETURN_ALL)
    lacking = sorted(k for k in model_only if EXTRA_STATE not in k)
    if lacking:
        raise ValueError(f"checkpoint {path} lacks tensor(s) the model needs: {lacking[:5]}")
    droppable = "mtp." if not chunk.config.mtp_num_layers else None
    extra = sorted(k for k in ckpt_only if EXTRA_STATE not in k and not (droppable and k.startswith(droppable)))
    if extra:
        raise ValueError(f"checkpoint {path} has tensor(s) the model does not: {extra[:5]} "
                         "(was it written for another architecture?)")
    result = chunk.load_state_dict(state, strict=False)
    absent = [k for k in result.missing_keys if not k.endswith(EXTRA_STATE)]
    if absent or result.unexpected_keys:
        raise ValueError(f"checkpoint {path} does not fit the model: missing {absent[:5]}, "
                         f"unexpected {result.unexpected_keys[:5]}")


def stored_dtype(iter_dir: str | Path) -> str:
    """'fp32' or 'bf16': the dtype the checkpoint's embedding was saved in."""
    from megatron.core import dist_checkpointing

    meta = dist_checkpointing.load_tensors_metadata(str(Path(iter_dir) / MODEL_DIR))
    emb = meta.get("embedding.word_embeddings.weight")
    dtype = emb.dtype if emb is not None else torch.float32
    return "bf16" if dtype == torch.bfloat16 else "fp32"


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def barrier() -> None:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()
