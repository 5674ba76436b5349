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
from r1mega.rl.packing import Layout, schedule_shape, split
from r1mega.training.step import scale_for_megatron, train_step


def minibatches(rows: list[int], count: int, gen: torch.Generator) -> list[list[int]]:
    """``rows`` shuffled (when ``count > 1``) and cut into ``count`` mini-batches that cover every
    row once: with packing a rank's share of rows need not divide by ``count`` (a rank may even
    own fewer rows than that; its empty mini-batches still join the step's collectives)."""
    n = len(rows)
    order = [rows[i] for i in torch.randperm(n, generator=gen).tolist()] if count > 1 else list(rows)
    return [order[j * n // count:(j + 1) * n // count] for j in range(count)]


def update(tm, batch: RolloutBatch, rl: GRPOConfig, temperature: float, vocab_limit: int, layout: Layout,
           seed: int) -> dict:
    """Train on the rows this rank owns (advantages set); returns the merged loss and optimizer
    metrics. ``seed`` + the scheduler's step count seeds the mini-batch shuffle (resumable)."""
    from megatron.core import parallel_state as ps

    from r1mega.parallel.comm import broadcast_from_last_stage

    dp_group, dp = ps.get_data_parallel_group(), ps.get_data_parallel_world_size()
    gen = torch.Generator().manual_seed(seed + tm.scheduler.num_steps)
    metrics = LossMetrics(rl.updates)
    for _ in range(rl.ppo_epochs):
        for rows in minibatches(batch.owned_rows(), rl.num_minibatches, gen):
            _, mbs = split(batch, rows, layout)
            denom = global_loss_denominator([b.mask for b in mbs], rl.loss_agg, group=dp_group)
            step = grpo_step(rl, temperature, vocab_limit, max(denom, 1), scale_for_megatron(len(mbs), dp))
            seq_length, mbs_arg = schedule_shape(mbs, layout)
            out = train_step(tm, step, mbs, seq_length, mbs_arg, collect=LossMetrics.partials)
            metrics.add(broadcast_from_last_stage(out), dp_group)
    return metrics.result()
