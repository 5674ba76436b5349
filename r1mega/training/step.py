"""One optimizer step through Megatron's forward-backward schedules.

``train_step`` runs every micro-batch of a global batch through
``get_forward_backward_func()`` (no pipelining, 1F1B, or interleaved, depending on the
layout), then steps the optimizer and the LR schedule.

Normalisation. A stage computes, before the step, the global denominator of its loss (for
token-mean: the number of loss tokens over all micro-batches *and* all data-parallel ranks).
Each micro-batch's loss function returns ``sum_of_token_losses / denominator`` multiplied by
``num_microbatches * dp``: Megatron divides every micro-batch loss by ``num_microbatches`` and
DDP averages gradients over ``dp`` ranks, so the two factors cancel and the accumulated
gradient is exactly the gradient of one big batch. :func:`scale_for_megatron` holds that factor.
"""

from __future__ import annotations

import time
from typing import Callable, Iterable

import torch

from r1mega.device import device
from r1mega.training.setup import TrainModel


def scale_for_megatron(num_microbatches: int, dp: int) -> float:
    """Factor for the micro-batch loss handed to Megatron's schedule (2-tuple loss function,
    ``calculate_per_token_loss=False``): cancels its 1/num_microbatches and DDP's 1/dp (see
    module doc)."""
    if num_microbatches < 1 or dp < 1:
        raise ValueError(f"need num_microbatches, dp >= 1, got {num_microbatches}, {dp}")
    return float(num_microbatches * dp)


def global_sum(value: float | torch.Tensor, group=None) -> float:
    """Sum a scalar over a process group (the data-parallel group by default)."""
    import torch.distributed as dist
    from megatron.core import parallel_state as ps

    t = torch.as_tensor(value, dtype=torch.float64).reshape(1).to(device())
    if dist.is_initialized():
        dist.all_reduce(t, group=group or ps.get_data_parallel_group())
    return float(t.item())


def train_step(
    tm: TrainModel,
    forward_step: Callable,
    microbatches: list,
    seq_length: int,
    micro_batch_size: int,
    collect: Callable[[list], dict] | None = None,
) -> dict:
    """Forward/backward over ``microbatches``, optimizer step, LR step. Returns step metrics:
    the per-micro-batch dicts returned by the loss functions, merged by ``collect`` (default:
    summed; non-last pipeline stages get an empty list), plus grad_norm, lr,
    update_successful and step time."""
    from megatron.core.pipeline_parallel import get_forward_backward_func

    start = time.perf_counter()
    tm.train()
    for c in tm.chunks:
        c.zero_grad_buffer()
    tm.optimizer.zero_grad()
    data_iter: Iterable = iter(microbatches)
    if len(tm.chunks) > 1:
        data_iter = [iter(microbatches) for _ in tm.chunks]
    outputs = get_forward_backward_func()(
        forward_step_func=forward_step,
        data_iterator=data_iter,
        model=tm.chunks,
        num_microbatches=len(microbatches),
        seq_length=seq_length,
        micro_batch_size=micro_batch_size,
        forward_only=False,
    )
    ok, grad_norm, _ = tm.optimizer.step()
    if ok:
        tm.scheduler.step(increment=1)
    metrics = (collect or _reduce_outputs)(outputs or [])
    metrics.update(
        grad_norm=float(grad_norm) if grad_norm is not None else float("nan"),
        lr=tm.optimizer.param_groups[0]["lr"],
        update_successful=bool(ok),
        step_time=time.perf_counter() - start,
    )
    return metrics


def forward_only(tm: TrainModel, forward_step: Callable, microbatches: list, seq_length: int, micro_batch_size: int) -> list:
    """Run the schedule without backward (e.g. old/reference log-probs); returns loss outputs."""
    from megatron.core.pipeline_parallel import get_forward_backward_func

    tm.eval()
    data_iter: Iterable = iter(microbatches)
    if len(tm.chunks) > 1:
        data_iter = [iter(microbatches) for _ in tm.chunks]
    with torch.no_grad():
        return get_forward_backward_func()(
            forward_step_func=forward_step,
            data_iterator=data_iter,
            model=tm.chunks,
            num_microbatches=len(microbatches),
            seq_length=seq_length,
            micro_batch_size=micro_batch_size,
            forward_only=True,
        )


def _reduce_outputs(outputs: list) -> dict:
    """Sum the metric dicts of all micro-batches (non-last pipeline stages get an empty list)."""
    total: dict = {}
    for out in outputs or []:
        for k, v in out.items():
            total[k] = total.get(k, 0.0) + float(v)
    return total
