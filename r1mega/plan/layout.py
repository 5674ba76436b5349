"""Check the parallel layout and decide which decoder layers each pipeline stage holds.

The layout check is :meth:`ParallelDims.resolve`, the same one ``r1mega-train`` runs at start-up,
so a plan that passes here passes there. One extension: Megatron can split layers *unevenly*
over pipeline stages (``num_layers_in_first_pipeline_stage`` / ``..._last_...``), which is how
DeepSeek-V3's 61 layers go on 16 stages (3 + 14 x 4 + 2: the first stage also holds the
embedding, the last the output layer, MTP and the loss). ``ParallelDims`` only knows even
splits, so for an uneven split the planner checks the first/last numbers itself and asks
``ParallelDims`` about a model of ``pp x (layers per middle stage)`` layers, which makes every
other check (heads, experts, batch) run unchanged.

Stage ``r`` of ``pp`` holds a contiguous range of layers; with a virtual pipeline (``vpp``)
the range is really ``vpp`` interleaved chunks, which changes how many micro-batches are in
flight (see :func:`in_flight_chunks`) but not how many parameters the rank holds.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from r1mega.config.errors import ConfigError
from r1mega.models.config import ModelConfig
from r1mega.parallel.dims import ParallelDims
from r1mega.plan.config import PlanConfig


@dataclass(frozen=True)
class Stage:
    """One pipeline rank's share of the model."""

    index: int
    """Pipeline rank, 0-based."""
    first_layer: int
    """Index of its first decoder layer."""
    num_layers: int
    """Decoder layers it holds (all virtual chunks together)."""
    dense_layers: int
    """How many of those are dense (the first_k_dense_layers of a MoE model)."""
    pre_process: bool
    """Holds the input embedding (first stage)."""
    post_process: bool
    """Holds the final norm, output layer, MTP layers and loss (last stage)."""

    @property
    def moe_layers(self) -> int:
        return self.num_layers - self.dense_layers


def stage_layer_counts(plan: PlanConfig, model: ModelConfig) -> list[int]:
    """Decoder layers per pipeline stage; ValueError names the key that makes it impossible."""
    pp, vpp = plan.parallel.pp, plan.parallel.vpp or 1
    first, last = plan.first_stage_layers, plan.last_stage_layers
    L = model.num_layers
    if first is None and last is None:
        return [L // pp] * pp  # evenness is ParallelDims' check
    if pp < 2:
        raise ConfigError("first_stage_layers/last_stage_layers need parallel.pp >= 2")
    ends = [n for n in (first, last) if n is not None]
    if any(n < 0 for n in ends):
        raise ConfigError(f"first_stage_layers/last_stage_layers must be >= 0, got {ends}")
    middle_stages = pp - len(ends)
    rest = L - sum(ends)
    if middle_stages == 0:
        if rest != 0:
            raise ConfigError(
                f"first_stage_layers + last_stage_layers = {sum(ends)} must equal "
                f"model.num_layers={L} when parallel.pp=2"
            )
        return [first, last]
    if rest < 0 or rest % (middle_stages * vpp):
        raise ConfigError(
            f"model.num_layers={L} minus first_stage_layers/last_stage_layers ({sum(ends)}) = {rest} "
            f"does not split evenly over the other {middle_stages} pipeline stages"
            f"{f' x parallel.vpp={vpp}' if vpp > 1 else ''}"
        )
    per = rest // middle_stages
    counts = [per] * pp
    if first is not None:
        counts[0] = first
    if last is not None:
        counts[-1] = last
    return counts


def resolve(plan: PlanConfig, model: ModelConfig) -> tuple[ParallelDims, list[Stage]]:
    """Validate the layout with ``ParallelDims.resolve`` and lay the layers out on stages."""
    counts = stage_layer_counts(plan, model)
    checked = model
    if plan.first_stage_layers is not None or plan.last_stage_layers is not None:
        middle = max(counts[1:-1], default=counts[0])
        checked = dataclasses.replace(model, num_layers=plan.parallel.pp * middle)
    gbs = plan.global_batch_size
    dims = ParallelDims.resolve(
        plan.parallel, plan.world_size, checked,
        global_batch_size=gbs, micro_batch_size=plan.micro_batch_size if gbs else None,
    )
    return dims, _stages(counts, model)


def _stages(counts: list[int], model: ModelConfig) -> list[Stage]:
    dense_total = model.first_k_dense_layers if model.is_moe else model.num_layers
    stages, start = [], 0
    for i, n in enumerate(counts):
        dense = max(0, min(start + n, dense_total) - start)
        stages.append(Stage(i, start, n, dense, i == 0, i == len(counts) - 1))
        start += n
    return stages


def num_microbatches(plan: PlanConfig, dims: ParallelDims) -> int:
    """Micro-batches per step; with no global batch size, enough to fill the pipeline."""
    if plan.global_batch_size is None:
        return max(dims.pp, 1)
    return dims.num_microbatches(plan.global_batch_size, plan.micro_batch_size)


def in_flight_chunks(stage: int, dims: ParallelDims, microbatches: int) -> float:
    """Micro-batch activations a stage holds at its peak, in units of its whole layer share.

    Megatron's 1F1B schedule runs ``pp - r - 1`` warm-up forwards on rank ``r`` before the
    first backward, so rank ``r`` holds ``pp - r`` micro-batches (the first stage: ``pp``).
    The interleaved schedule warms up ``2 (pp - r - 1) + (vpp - 1) pp`` chunks of
    ``1/vpp`` of the stage each. Neither can hold more than the step has.
    """
    pp, vpp = dims.pp, dims.vpp or 1
    if pp == 1:
        return 1.0
    if vpp == 1:
        return float(min(pp - stage, microbatches))
    chunks = min(2 * (pp - stage - 1) + (vpp - 1) * pp + 1, microbatches * vpp)
    return chunks / vpp
