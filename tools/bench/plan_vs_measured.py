"""Measure a real training peak and print the planner's estimate beside it.

    python tools/bench/plan_vs_measured.py model=qwen2_5_1_5b seq_length=4096 micro_batch_size=1 gpu=h200
    torchrun --nproc-per-node 2 tools/bench/plan_vs_measured.py model=deepseek_v3_tiny parallel.ep=2 ...

Builds the model with r1mega's provider and trains it the way the SFT stage does
(``r1mega.training.setup.build_train_model``: Megatron DDP with fp32 gradient buffers, the
distributed optimizer, ``train_step`` through Megatron's schedules) for ``--steps`` steps on
random tokens, then reports ``torch.cuda.max_memory_allocated`` (the peak over the steps,
optimizer states included: Adam allocates them at the first step) next to the planner's
``allocated`` for the same rank (states + activations; the planner's overhead and rollout
terms are not allocator memory and are left out). Exit status 0 when every rank is within
``--tolerance`` (default 15%), 1 otherwise.

Overrides are ``r1mega-plan``'s keys: ``model=``, ``model.*``, ``parallel.*``, ``seq_length``,
``micro_batch_size``, ``global_batch_size`` (micro-batches per step = gbs / (mbs x dp)),
``recompute`` (none, selective, full: set on Megatron's TransformerConfig), ``gpu``, ``fp8``.
The world size comes from torchrun (1 without it). On a machine without CUDA the script runs
the steps (fp32, gloo) and prints the estimate, with no measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("overrides", nargs="*", help="r1mega-plan overrides (model=..., seq_length=..., ...)")
    p.add_argument("--steps", type=int, default=3, help="training steps to run (default 3)")
    p.add_argument("--tolerance", type=float, default=0.15, help="allowed |estimate/measured - 1| (default 0.15)")
    p.add_argument("--json", help="also write the comparison to this JSON file")
    p.add_argument("--breakdown", action="store_true", help="print saved-activation bytes per token by module")
    return p.parse_intermixed_args(argv)


def build_plan(overrides: list[str]):
    """The plan for this launch: world size from torchrun, dtype from the device."""
    from r1mega.plan.overrides import plan_from_overrides

    import importlib.util

    world = int(os.environ.get("WORLD_SIZE", 1))
    have = {name: importlib.util.find_spec(name) is not None for name in ("transformer_engine", "apex")}
    base = {
        "nodes": 1, "gpus_per_node": world, "dtype": "bf16" if torch.cuda.is_available() else "fp32",
        # what r1mega's provider builds here (model.spec=auto): TE when it is installed
        "spec": "te" if have["transformer_engine"] and torch.cuda.is_available() else "local",
        # Megatron falls back to torch.optim.AdamW (one fp32 temporary per parameter in its
        # foreach step) when neither TE nor Apex provides FusedAdam
        "optimizer_step_temp_bytes": 0.0 if have["transformer_engine"] or have["apex"] else 4.0,
    }
    plan, model = plan_from_overrides(overrides, base=base)
    plan.validate()
    return plan, model


def apply_recompute(plan) -> None:
    """Make the provider's TransformerConfig carry the plan's recompute choice."""
    from r1mega.models import provider

    if plan.recompute == "none":
        return
    original = provider.transformer_config

    def with_recompute(*args, **kwargs):
        cfg = original(*args, **kwargs)
        cfg.recompute_granularity = plan.recompute
        if plan.recompute == "full":
            cfg.recompute_method, cfg.recompute_num_layers = "uniform", 1
        else:
            cfg.recompute_modules = list(plan.recompute_modules)
        return cfg

    provider.transformer_config = with_recompute


def allow_gpu_without_te() -> None:
    """Build MLA/MoE models on a GPU without Transformer Engine (the local spec).

    Without TE, Megatron fills the missing package with mocks, so multi_latent_attention
    believes TE is there (its isinstance checks then fail) and the MoE router looks up an
    undefined TE GEMM. r1mega.compat.cpu fixes both on CPU only; the same two lines are
    needed on a GPU machine without TE.
    """
    import importlib.util

    if not torch.cuda.is_available() or importlib.util.find_spec("transformer_engine") is not None:
        return
    from megatron.core.transformer import multi_latent_attention
    from megatron.core.transformer.moe import moe_utils

    multi_latent_attention.HAVE_TE = False
    if not hasattr(moe_utils, "te_general_gemm"):
        moe_utils.te_general_gemm = None


def forward_step_factory(vocab: int, seq: int, mbs: int):
    """Megatron forward_step on random tokens: mean next-token loss."""

    def forward_step(data_iterator, model):
        next(data_iterator)
        dev = torch.cuda.current_device() if torch.cuda.is_available() else "cpu"
        tokens = torch.randint(0, vocab, (mbs, seq), device=dev)
        positions = torch.arange(seq, device=dev).unsqueeze(0).expand(mbs, seq)
        labels = torch.roll(tokens, -1, dims=1)
        out = model(tokens, positions, attention_mask=None, labels=labels)

        def loss_func(token_loss):
            loss = token_loss.float().mean()
            return loss, {"loss": loss.detach()}

        return out, loss_func

    return forward_step


def train(plan, model_cfg, steps: int, breakdown: bool = False):
    """Build, train ``steps`` steps; returns (dims, peak bytes or None)."""
    from megatron.core import parallel_state as ps

    from r1mega.models.precision import PrecisionConfig
    from r1mega.parallel.dims import ParallelDims
    from r1mega.training.config import OptimConfig, TrainerConfig
    from r1mega.training.setup import build_train_model
    from r1mega.training.step import train_step

    dims = ParallelDims.resolve(plan.parallel, plan.world_size, None)
    dims.build()
    precision = PrecisionConfig(dtype=plan.dtype, fp8="e4m3" if plan.fp8 else None, fp8_param=plan.fp8_param)
    trainer = TrainerConfig(max_steps=steps, micro_batch_size=plan.micro_batch_size,
                            global_batch_size=plan.global_batch_size or plan.micro_batch_size * dims.dp,
                            precision=precision)
    apply_recompute(plan)
    allow_gpu_without_te()
    tm = build_train_model(model_cfg, dims, OptimConfig(warmup_steps=0), trainer,
                           plan.parallel.distributed_optimizer)
    n_micro = trainer.global_batch_size // (trainer.micro_batch_size * dims.dp)
    step = forward_step_factory(model_cfg.vocab_size, plan.seq_length, plan.micro_batch_size)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    for _ in range(steps):
        train_step(tm, step, [None] * n_micro, plan.seq_length, plan.micro_batch_size)
    peak = None
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    if breakdown and int(os.environ.get("RANK", 0)) == 0:
        tokens = plan.seq_length * plan.micro_batch_size
        for name, per_token in saved_breakdown(tm, step, model_cfg.num_layers, tokens).items():
            print(f"saved {name:<55} {per_token:>10.0f} B/token")
    return dims, ps.get_pipeline_model_parallel_rank(), peak


def saved_breakdown(tm, step_fn, layers: int, tokens: int) -> dict[str, float]:
    """Bytes per token (per layer for decoder modules) that one forward pass saves for backward,
    by the leaf module that was running (ops after a module, like SwiGLU after linear_fc1, count
    with it). Each storage is counted once."""
    import re
    from collections import defaultdict

    from torch.autograd.graph import saved_tensors_hooks

    model = tm.chunks[0]
    current, totals = ["(inputs)"], defaultdict(float)
    seen = {p.untyped_storage().data_ptr() for p in model.parameters()}  # weights are not activations
    hooks = [m.register_forward_pre_hook(lambda _m, _i, n=name: current.__setitem__(0, n))
             for name, m in model.named_modules() if not list(m.children())]

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            name = re.sub(r"(layers|local_experts)\.\d+\.", r"\1.*.", current[0])
            totals[name] += storage.nbytes()
        return t

    with saved_tensors_hooks(pack, lambda t: t):
        out, _ = step_fn(iter([None]), model)
    del out
    for h in hooks:
        h.remove()
    return {k: v / tokens / (layers if ".layers.*." in k else 1) for k, v in sorted(totals.items())}


def gather(record: dict) -> list[dict]:
    import torch.distributed as dist

    if not dist.is_initialized() or dist.get_world_size() == 1:
        return [record]
    out: list = [None] * dist.get_world_size()
    dist.all_gather_object(out, record)
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    from r1mega.plan.estimate import estimate
    from r1mega.plan.gpus import GIB
    from r1mega.plan.report import table

    plan, model_cfg = build_plan(args.overrides)
    est = estimate(plan, model_cfg)
    dims, stage, peak = train(plan, model_cfg, args.steps, args.breakdown)
    expected = est.stages[stage].allocated
    rank = int(os.environ.get("RANK", 0))
    rows = gather({"rank": rank, "stage": stage, "measured": peak, "estimate": expected})
    if rank != 0:
        return 0
    print(table(est) + "\n")
    print(f"{'rank':>4} {'stage':>5} {'measured GiB':>13} {'estimate GiB':>13} {'estimate/measured':>18}")
    ok = True
    for r in rows:
        if r["measured"] is None:
            print(f"{r['rank']:>4} {r['stage']:>5} {'n/a (no CUDA)':>13} {r['estimate'] / GIB:>13.2f}")
            continue
        ratio = r["estimate"] / r["measured"]
        ok &= abs(ratio - 1) <= args.tolerance
        print(f"{r['rank']:>4} {r['stage']:>5} {r['measured'] / GIB:>13.2f} {r['estimate'] / GIB:>13.2f} {ratio:>18.3f}")
    measured = [r for r in rows if r["measured"] is not None]
    if measured:
        print(f"\nwithin {args.tolerance:.0%} on every rank: {'yes' if ok else 'NO'}")
    if args.json:
        Path(args.json).write_text(json.dumps({"overrides": args.overrides, "rows": rows}, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
