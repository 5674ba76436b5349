"""Render an :class:`~r1mega.plan.estimate.Estimate` as a table (for people) or a dict (JSON).

The table shows the first stage, the busiest stage and the last stage (the three differ: the
first holds the embedding and the most in-flight micro-batches, the last the output layer,
MTP and logits), one row per memory component, in GiB, then the verdict::

    DeepSeek-V3 on 32 x 8 H100 80GB: tp=1 pp=16 ep=16 etp=1 cp=1 dp=16 (expert dp 1) ...
    component            stage 0   stage 1   stage 15
    weights                 5.00      6.99       7.15
    ...
    total                  23.55     60.16      55.87
    capacity 79.65 GiB: FITS (peak stage 1, 19.49 GiB free)
"""

from __future__ import annotations

from typing import Any

from r1mega.plan.estimate import Estimate, StageEstimate
from r1mega.plan.gpus import GIB, GPUS

ROWS = (
    ("params (B)", lambda s: s.params / 1e9),
    ("weights", lambda s: s.weights / GIB),
    ("gradients", lambda s: s.grads / GIB),
    ("optimizer", lambda s: s.optimizer / GIB),
    ("activations", lambda s: s.activations / GIB),
    ("  in-flight mb", lambda s: s.in_flight),
    ("optimizer step", lambda s: s.step_temp / GIB),
    ("reference", lambda s: s.reference / GIB),
    ("allocated", lambda s: s.allocated / GIB),
    ("rollout engine", lambda s: s.rollout / GIB),
    ("overhead", lambda s: s.overhead / GIB),
    ("total", lambda s: s.total / GIB),
)


def shown_stages(est: Estimate) -> list[StageEstimate]:
    """First, busiest and last stage, in pipeline order, without repeats."""
    picked = {0: est.stages[0], est.peak.stage.index: est.peak, len(est.stages) - 1: est.stages[-1]}
    return [picked[i] for i in sorted(picked)]


def headline(est: Estimate) -> str:
    p, d = est.plan, est.dims
    return (
        f"{est.model.name} on {p.nodes} x {p.gpus_per_node} {GPUS[p.gpu].name}: "
        f"tp={d.tp} pp={d.pp}{f' vpp={d.vpp}' if d.vpp else ''} ep={d.ep} etp={d.etp} cp={d.cp} "
        f"dp={d.dp}{f' (expert dp {d.expert_dp})' if est.model.is_moe else ''}, "
        f"sp={'on' if d.sequence_parallel else 'off'}; mbs={p.micro_batch_size} x seq={p.seq_length}, "
        f"{est.microbatches} micro-batch{'es' if est.microbatches != 1 else ''}; "
        f"{'fp8' if p.fp8 else p.dtype}, recompute={p.recompute}, rollout={p.rollout}"
    )


def verdict(est: Estimate) -> str:
    peak = est.peak
    state = "FITS" if est.fits else "DOES NOT FIT"
    free = "free" if est.fits else "over"
    return (
        f"capacity {est.capacity / GIB:.2f} GiB: {state} "
        f"(peak stage {peak.stage.index}, {abs(est.headroom_gib):.2f} GiB {free})"
    )


def table(est: Estimate) -> str:
    """The human-readable report."""
    stages = shown_stages(est)
    header = ["component"] + [f"stage {s.stage.index}" for s in stages]
    lines = [headline(est), "", _row(header)]
    for name, get in ROWS:
        lines.append(_row([name] + [f"{get(s):.2f}" for s in stages]))
    lines += ["", verdict(est)]
    return "\n".join(lines)


def _row(cells: list[str]) -> str:
    return f"{cells[0]:<18}" + "".join(f"{c:>12}" for c in cells[1:])


def as_dict(est: Estimate) -> dict[str, Any]:
    """A JSON-able record: inputs, resolved layout, every stage in GiB, the verdict."""
    d = est.dims
    return {
        "model": est.model.name,
        "gpu": est.plan.gpu,
        "world_size": d.world_size,
        "layout": {"tp": d.tp, "pp": d.pp, "vpp": d.vpp, "ep": d.ep, "etp": d.etp, "cp": d.cp,
                   "dp": d.dp, "expert_dp": d.expert_dp, "sequence_parallel": d.sequence_parallel},
        "microbatches": est.microbatches,
        "stages": [_stage_dict(s) for s in est.stages],
        "peak_stage": est.peak.stage.index,
        "peak_gib": est.peak.total / GIB,
        "capacity_gib": est.capacity / GIB,
        "fits": est.fits,
    }


def _stage_dict(s: StageEstimate) -> dict[str, Any]:
    out = {"stage": s.stage.index, "layers": s.stage.num_layers, "params": s.params, "in_flight": s.in_flight}
    for key in ("weights", "grads", "optimizer", "activations", "step_temp", "reference", "allocated", "rollout",
                "overhead", "total"):
        out[f"{key}_gib"] = getattr(s, key) / GIB
    return out
