"""Worker functions for the multi-rank layout tests (importable by spawned processes)."""

from __future__ import annotations

import torch


def logits_at_layout(model_name: str, layout: dict, ckpt: str | None, seed: int = 7):
    """Build ``model_name`` at ``layout``; load ``ckpt`` (or save a fresh init there when it
    does not exist yet); return full-vocab logits on fixed tokens, gathered on rank 0."""
    from pathlib import Path

    import torch.distributed as dist
    from megatron.core import parallel_state as ps
    from megatron.core import tensor_parallel
    from omegaconf import OmegaConf

    from r1mega.config.paths import conf_dir
    from r1mega.models.config import ModelConfig
    from r1mega.models.precision import PrecisionConfig
    from r1mega.parallel.config import ParallelConfig
    from r1mega.parallel.dims import ParallelDims
    from r1mega.training import checkpoint as ckpt_mod
    from r1mega.training.setup import build_chunks
    from tests.foundation.dist_utils import world_size

    raw = OmegaConf.to_container(OmegaConf.load(conf_dir() / "model" / f"{model_name}.yaml"))
    model_cfg = ModelConfig(**raw)
    dims = ParallelDims.resolve(ParallelConfig(**layout), world_size(), model_cfg)
    dims.build("gloo", seed=seed)
    chunks = build_chunks(model_cfg, dims, PrecisionConfig(dtype="fp32"))
    model = chunks[0]
    if ckpt is not None:
        if not Path(ckpt, "latest").exists():
            _save_init(ckpt, chunks, model_cfg, dims)
        ckpt_mod.load_model_weights(ckpt_mod.latest_checkpoint(ckpt), chunks)
    model.eval()
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, model_cfg.vocab_size, (2, 32), generator=g)
    pos = torch.arange(32).expand(2, 32)
    logits = _forward(chunks, tokens, pos, dims)  # [b, s, vocab / tp] on the last stage
    out = None
    if logits is not None:
        full = tensor_parallel.gather_from_tensor_model_parallel_region(logits)
        if ps.get_tensor_model_parallel_rank() == 0 and ps.get_data_parallel_rank() == 0:
            out = full[..., : model_cfg.vocab_size].clone()
    ps.destroy_model_parallel()
    dist.destroy_process_group()
    return out


def _forward(chunks, tokens, pos, dims):
    """Logits through Megatron's (pipelined) forward schedule; None off the last stage."""
    from megatron.core import parallel_state as ps
    from megatron.core.pipeline_parallel import get_forward_backward_func

    def step(data_iterator, model):
        out = model(tokens, pos, attention_mask=None)
        return out, lambda t: (t.sum() * 0, {"logits": t.detach()})

    with torch.no_grad():
        outs = get_forward_backward_func()(
            forward_step_func=step, data_iterator=iter([None]), model=chunks, num_microbatches=1,
            seq_length=tokens.shape[1], micro_batch_size=tokens.shape[0], forward_only=True,
        )
    return outs[0]["logits"] if ps.is_pipeline_last_stage() else None


def _save_init(ckpt, chunks, model_cfg, dims):
    """Write a model-only checkpoint in r1mega's layout (used to share one init across layouts)."""
    import dataclasses
    import json
    from pathlib import Path

    import torch.distributed as dist
    from megatron.core import dist_checkpointing

    it = Path(ckpt) / "iter_0000000"
    if dist.get_rank() == 0:
        (it / "model").mkdir(parents=True)
    dist.barrier()
    dist_checkpointing.save(chunks[0].sharded_state_dict(), str(it / "model"))
    dist.barrier()
    if dist.get_rank() == 0:
        meta = {"iteration": 0, "model": dataclasses.asdict(model_cfg), "complete": True}
        (it / "r1mega.json").write_text(json.dumps(meta))
        (Path(ckpt) / "latest").write_text("0\n")
    dist.barrier()
