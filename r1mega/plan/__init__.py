"""Preflight planner: will this model, layout and batch fit on these GPUs?

Training a 671B MoE is expensive to get wrong: a layout that does not fit only fails after the
job has waited in the queue, loaded a checkpoint and run its first step. The planner answers
before submission, from formulas alone (no GPU, no Megatron import):

* :mod:`~r1mega.plan.config`: :class:`PlanConfig`, every input of the estimate;
* :mod:`~r1mega.plan.sources`: where ``conf/`` lives and how ``model=`` names are loaded;
* :mod:`~r1mega.plan.overrides`: Hydra-style ``key=value`` overrides (planner keys and the
  matching ``r1mega-train`` keys) -> ``PlanConfig``;
* :mod:`~r1mega.plan.gpus`: memory of the supported GPU types;
* :mod:`~r1mega.plan.layout`: the layout check (``ParallelDims.resolve``) and which layers
  each pipeline stage holds;
* :mod:`~r1mega.plan.states`: parameters, gradients and optimizer states per rank;
* :mod:`~r1mega.plan.activations`: activation memory per layer (Korthikanti et al. 2022,
  adapted to SwiGLU, GQA, MLA, MoE, flash attention and Megatron's recompute options);
* :mod:`~r1mega.plan.estimate`: everything summed per pipeline stage, and the verdict;
* :mod:`~r1mega.plan.report`: the table and the JSON record.

``r1mega-plan`` is the command line; ``r1mega-launch`` runs the same estimate before it submits.
"""

from r1mega.plan.config import PlanConfig
from r1mega.plan.estimate import Estimate, estimate

__all__ = ["PlanConfig", "Estimate", "estimate"]
