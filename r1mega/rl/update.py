"""The policy update of one GRPO step: ``rl.ppo_epochs x rl.num_minibatches`` optimizer steps.

Each optimizer step trains on one mini-batch of the rollout batch (rows shuffled per epoch
when there are several mini-batches), normalised by the global token / sequence count of that
mini-batch over all data-parallel ranks, so the accumulated gradient is exactly that of one
big batch (see :mod:`r1mega.training.step`). Metrics are merged by
:class:`r1mega.rl.metrics.LossMetrics`.
"""

from __future__ import annotations

import torch

from r1mega.rl.batch import RolloutBatch
from r1mega.rl.config import GRPOConfig
from r1mega.rl.forward import grpo_step
from r1mega.rl.losses import global_loss_denominator
from r1mega.rl.metrics import LossMetrics
from r1mega.training.step import scale_for_megatron, train_step


def update(tm, batch: RolloutBatch, rl: GRPOConfig, temperature: float, vocab_limit: int, micro_batch_size: int,
           seed: int) -> dict:
    """Train on ``batch`` (advantages set); returns the merged loss and optimizer metrics.
    ``seed`` + the scheduler's step count seeds the mini-batch shuffle (resumable)."""
    from megatron.core import parallel_state as ps

    from r1mega.parallel.comm import broadcast_from_last_stage

    dp_group, dp = ps.get_data_parallel_group(), ps.get_data_parallel_world_size()
    n, updates = len(batch), rl.ppo_epochs * rl.num_minibatches
    per_mini = n // rl.num_minibatches
    gen = torch.Generator().manual_seed(seed + tm.scheduler.num_steps)
    metrics = LossMetrics(updates)
    for _ in range(rl.ppo_epochs):
        order = torch.randperm(n, generator=gen).tolist() if rl.num_minibatches > 1 else list(range(n))
        for j in range(rl.num_minibatches):
            mbs = batch.micro_batches(order[j * per_mini:(j + 1) * per_mini], micro_batch_size)
            denom = global_loss_denominator([b.mask for b in mbs], rl.loss_agg, group=dp_group)
            step = grpo_step(rl, temperature, vocab_limit, max(denom, 1), scale_for_megatron(len(mbs), dp))
            out = train_step(tm, step, mbs, batch.seq_length, micro_batch_size, collect=LossMetrics.partials)
            metrics.add(broadcast_from_last_stage(out), dp_group)
    return metrics.result()
