"""Build what every training stage needs: model chunks in DDP, optimizer, LR schedule.

The pieces are Megatron-Core's own (``DistributedDataParallel``, ``get_megatron_optimizer``,
``OptimizerParamScheduler``, ``finalize_model_grads``), wired the way Megatron's training
loop wires them, so a stage written against :class:`TrainModel` runs unchanged at any
TP/PP/EP/DP layout. On CPU the distributed optimizer (which allocates on CUDA) falls back to
Megatron's plain fp32 optimizer; everything else is identical.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from r1mega.models.config import ModelConfig
from r1mega.models.precision import PrecisionConfig
from r1mega.models.provider import build_model
from r1mega.parallel.dims import ParallelDims
from r1mega.training.config import OptimConfig, TrainerConfig


@dataclass
class TrainModel:
    """Model chunks (one per virtual pipeline stage), optimizer and scheduler of one rank."""

    chunks: list
    optimizer: object
    scheduler: object
    model_cfg: ModelConfig
    dims: ParallelDims

    @property
    def config(self):
        return self.chunks[0].config

    def unwrapped(self) -> list:
        return [c.module for c in self.chunks]

    def train(self) -> None:
        for c in self.chunks:
            c.train()

    def eval(self) -> None:
        for c in self.chunks:
            c.eval()


def build_chunks(model_cfg: ModelConfig, dims: ParallelDims, precision: PrecisionConfig) -> list:
    """Unwrapped GPTModel chunks for this rank (several with virtual pipeline stages)."""
    from megatron.core import parallel_state as ps

    chunks = []
    for vp in range(dims.vpp or 1):
        vp_stage = vp if dims.vpp else None
        pre = ps.is_pipeline_first_stage(ignore_virtual=False, vp_stage=vp_stage)
        post = ps.is_pipeline_last_stage(ignore_virtual=False, vp_stage=vp_stage)
        chunks.append(build_model(model_cfg, dims, precision, pre_process=pre, post_process=post, vp_stage=vp_stage))
    return chunks


def build_train_model(
    model_cfg: ModelConfig,
    dims: ParallelDims,
    optim: OptimConfig,
    trainer: TrainerConfig,
    distributed_optimizer: bool = True,
) -> TrainModel:
    from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig
    from megatron.core.distributed.finalize_model_grads import finalize_model_grads
    from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer
    from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler

    from megatron.core.transformer.module import Float16Module

    use_dist_opt = distributed_optimizer and torch.cuda.is_available()
    raw = build_chunks(model_cfg, dims, trainer.precision)
    if raw[0].config.bf16:  # as Megatron's loop does: bf16 compute, fp32 logits on the last stage
        raw = [Float16Module(c.config, c) for c in raw]
    ddp_cfg = DistributedDataParallelConfig(
        grad_reduce_in_fp32=True,
        use_distributed_optimizer=use_dist_opt,
        overlap_grad_reduce=False,
        check_for_nan_in_grad=True,
    )
    chunks = [
        DistributedDataParallel(c.config, ddp_cfg, c, disable_bucketing=i > 0) for i, c in enumerate(raw)
    ]
    config = raw[0].config
    config.finalize_model_grads_func = finalize_model_grads
    config.no_sync_func = [c.no_sync for c in chunks] if len(chunks) > 1 else chunks[0].no_sync
    bf16 = trainer.precision.torch_dtype() == torch.bfloat16
    opt_cfg = OptimizerConfig(
        optimizer=optim.optimizer,
        lr=optim.lr,
        min_lr=optim.min_lr,
        weight_decay=optim.weight_decay,
        adam_beta1=optim.adam_beta1,
        adam_beta2=optim.adam_beta2,
        adam_eps=optim.adam_eps,
        clip_grad=optim.clip_grad,
        bf16=bf16,
        params_dtype=trainer.precision.torch_dtype(),
        use_distributed_optimizer=use_dist_opt,
    )
    optimizer = get_megatron_optimizer(opt_cfg, chunks)
    decay_steps = optim.decay_steps or trainer.max_steps
    scheduler = OptimizerParamScheduler(
        optimizer,
        init_lr=0.0 if optim.warmup_steps else optim.lr,
        max_lr=optim.lr,
        min_lr=optim.min_lr,
        lr_warmup_steps=min(optim.warmup_steps, max(decay_steps - 1, 0)),
        lr_decay_steps=max(decay_steps, 1),
        lr_decay_style=optim.decay_style,
        start_wd=optim.weight_decay,
        end_wd=optim.weight_decay,
        wd_incr_steps=max(decay_steps, 1),
        wd_incr_style="constant",
    )
    return TrainModel(chunks, optimizer, scheduler, model_cfg, dims)
