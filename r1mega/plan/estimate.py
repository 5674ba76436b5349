"""Sum the memory of every pipeline stage and decide whether the busiest GPU fits.

For pipeline rank ``r`` the estimate is::

    weights + gradients + optimizer states           (states.py, this stage's layers)
  + max( in_flight(r) x activations of the stage's layers (activations.py, layout.py)
         + [full recompute] one layer rebuilt for its backward
         + [first stage] embedding output   [last stage] logits, MTP layers,
         optimizer-step temporaries )
  + rollout engine share + reference weights + fixed overhead

``allocated`` is what ``torch.cuda.max_memory_allocated`` should show (states and
activations); ``total`` adds the memory PyTorch's allocator does not see (overhead,
rollout engine). A plan fits when the largest ``total`` is at most the GPU's capacity.
"""

from __future__ import annotations

from dataclasses import dataclass

from r1mega.models.config import ModelConfig
from r1mega.parallel.dims import ParallelDims
from r1mega.plan import activations as act
from r1mega.plan.config import PlanConfig
from r1mega.plan.gpus import GIB, GPUS
from r1mega.plan.layout import Stage, in_flight_chunks, num_microbatches, resolve
from r1mega.plan.states import stage_params, state_bytes


@dataclass(frozen=True)
class StageEstimate:
    """Memory of one GPU of one pipeline stage, in bytes."""

    stage: Stage
    params: float
    weights: float
    grads: float
    optimizer: float
    activations: float
    step_temp: float
    in_flight: float
    rollout: float
    reference: float
    overhead: float

    @property
    def allocated(self) -> float:
        """What PyTorch's allocator holds at the peak: the model states plus the larger of the
        backward pass's activations and the optimizer step's temporaries."""
        states = self.weights + self.grads + self.optimizer + self.reference
        return states + max(self.activations, self.step_temp)

    @property
    def total(self) -> float:
        return self.allocated + self.rollout + self.overhead


@dataclass(frozen=True)
class Estimate:
    """The plan's verdict."""

    plan: PlanConfig
    model: ModelConfig
    dims: ParallelDims
    microbatches: int
    stages: list[StageEstimate]
    capacity: float

    @property
    def peak(self) -> StageEstimate:
        return max(self.stages, key=lambda s: s.total)

    @property
    def fits(self) -> bool:
        return self.peak.total <= self.capacity

    @property
    def headroom_gib(self) -> float:
        return (self.capacity - self.peak.total) / GIB


def _activations(m: ModelConfig, plan: PlanConfig, dims: ParallelDims, stage: Stage, mb: int) -> tuple[float, float]:
    """(activation bytes at the stage's peak, micro-batches in flight)."""
    flight = in_flight_chunks(stage.index, dims, mb)
    mtp = (m.mtp_num_layers or 0) if stage.post_process else 0
    dense_b = act.layer_bytes(m, plan, dims, moe=False)
    moe_b = act.layer_bytes(m, plan, dims, moe=True) if m.is_moe else 0.0
    if plan.recompute == "full":
        per_mb = (stage.num_layers + mtp) * act.layer_input_bytes(m, plan, dims)
        kinds = ([dense_b] if stage.dense_layers else []) + ([moe_b] if stage.moe_layers or mtp else [])
        rebuilt = max(kinds, default=0.0)
    else:
        per_mb = stage.dense_layers * dense_b + (stage.moe_layers + mtp) * moe_b
        rebuilt = 0.0
    total = flight * per_mb + rebuilt
    if stage.pre_process:
        total += flight * act.layer_input_bytes(m, plan, dims)  # embedding output
    if stage.post_process:
        total += act.logits_bytes(m, plan, dims)
    return total, flight


def _rollout(plan: PlanConfig, capacity: float) -> float:
    if plan.rollout == "colocated":
        return plan.rollout_gpu_memory_utilization * capacity
    if plan.rollout == "sleep":
        return plan.rollout_sleep_residual_gib * GIB
    return 0.0


def estimate_stage(m: ModelConfig, plan: PlanConfig, dims: ParallelDims, stage: Stage, mb: int, capacity: float) -> StageEstimate:
    params = stage_params(m, dims, stage)
    states = state_bytes(plan, dims, params)
    activations, flight = _activations(m, plan, dims, stage, mb)
    reference = params.total * 2.0 if plan.reference_on_gpu else 0.0
    return StageEstimate(
        stage=stage, params=params.total, weights=states.weights, grads=states.grads,
        optimizer=states.optimizer, activations=activations, step_temp=states.step_temp, in_flight=flight,
        rollout=_rollout(plan, capacity), reference=reference, overhead=plan.overhead_gib * GIB,
    )


def estimate(plan: PlanConfig, model: ModelConfig) -> Estimate:
    """Validate ``plan`` against ``model`` and estimate every stage; ValueError names keys."""
    plan.validate()
    dims, stages = resolve(plan, model)
    mb = num_microbatches(plan, dims)
    capacity = float(GPUS[plan.gpu].memory_bytes)
    per_stage = [estimate_stage(model, plan, dims, s, mb, capacity) for s in stages]
    return Estimate(plan, model, dims, mb, per_stage, capacity)
