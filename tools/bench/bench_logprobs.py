"""Time and peak memory of the RL log-prob pass and of a GRPO training pass, old path vs new.

    python tools/bench/bench_logprobs.py model=qwen2_5_1_5b --tokens 8192 --rows 8 --repeats 5

Builds the policy the way the GRPO stage does (``build_train_model``: TE spec, bf16, Megatron DDP
and optimizer) with random weights and a random batch of ``--rows`` rows of ``--tokens`` tokens
in all (prompt 1/4, response 3/4, the model's padded vocabulary above the tokenizer's), then
runs, alternately and ``--repeats`` times each after a warm-up:

* ``legacy``: the log-prob path before the lean change: Float16Module casts the whole logits to
  fp32, the padded vocabulary rows are masked in a second fp32 copy, the kernel reads that;
* ``lean``: logits stay bf16, the kernel slices the padded ids off and converts per chunk;

each as a forward-only log-prob pass (the old-policy / reference pass) and as a forward +
backward of the GRPO loss (no optimizer step), over padded micro-batches of ``--mbs`` rows.
With ``--packed N`` the lean path also runs on packed micro-batches of at most N tokens.
``--spread`` makes row lengths differ (the padded layout then computes padding too). Reports
the median time and the peak of ``torch.cuda.max_memory_allocated`` above the resident model
per 8k real tokens, as a table and (``--json``) a file. Without CUDA it runs as a
smoke test (local spec, fp32, no memory figures).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("overrides", nargs="*", help="r1mega-train overrides (model=..., ...)")
    p.add_argument("--tokens", type=int, default=8192)
    p.add_argument("--rows", type=int, default=8)
    p.add_argument("--mbs", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--vocab-limit", type=int, default=151665, help="tokenizer size (ids above are padding)")
    p.add_argument("--packed", type=int, default=0, help="also run lean packed micro-batches of this many tokens")
    p.add_argument("--spread", type=float, default=0.0,
                   help="row lengths spread evenly over (1 +- spread) x the mean (0: all equal)")
    p.add_argument("--json")
    return p.parse_args(argv)


def legacy_steps(temperature: float, vocab_limit: int):
    """The pre-change forward steps: fp32 logits from Float16Module, a masked fp32 copy."""
    from megatron.core import parallel_state as ps

    from r1mega.device import device
    from r1mega.rl.logprobs import vocab_parallel_logprobs

    def logp_of(model, batch):
        b = batch.to(device())
        out = model(b.tokens, b.position_ids, None)

        def logp_entropy(logits):
            logits = logits.float()
            v_local = logits.shape[-1]
            start = ps.get_tensor_model_parallel_rank() * v_local
            ids = torch.arange(start, start + v_local, device=logits.device)
            logits = logits.masked_fill(ids >= vocab_limit, -1.0e4)
            return vocab_parallel_logprobs(logits, b.labels, group=ps.get_tensor_model_parallel_group(),
                                           temperature=temperature)

        return out, b, logp_entropy

    def fwd(data_iterator, model):
        out, b, logp_entropy = logp_of(model, next(data_iterator))
        return out, lambda logits: (logits.sum() * 0.0, {"logp": (logp_entropy(logits)[0] * b.mask).detach()})

    def train(data_iterator, model):
        out, b, logp_entropy = logp_of(model, next(data_iterator))

        def loss_func(logits):
            logp, entropy = logp_entropy(logits)
            loss = -(b.advantages[:, None] * torch.exp(logp - logp.detach()) * b.mask).sum() / b.mask.sum()
            return loss, {}

        return out, loss_func

    return fwd, train


def lean_train_step(temperature: float, vocab_limit: int):
    from r1mega.rl.forward import token_logprobs

    def train(data_iterator, model):
        out, b, logp_entropy = token_logprobs(model, next(data_iterator), temperature, vocab_limit)

        def loss_func(logits):
            logp, entropy = logp_entropy(logits)
            loss = -(b.advantages[:, None] * torch.exp(logp - logp.detach()) * b.mask).sum() / b.mask.sum()
            return loss, {}

        return out, loss_func

    return train


def make_batch(rows: int, tokens: int, vocab_limit: int, spread: float = 0.0):
    from r1mega.rl.batch import RolloutBatch, agreed_length
    from r1mega.rollout.base import Generation

    g = torch.Generator().manual_seed(0)
    per = tokens / rows
    sizes = [max(2, round(per * (1 + spread * (2 * i / max(rows - 1, 1) - 1)))) for i in range(rows)]
    sizes[0] += tokens - sum(sizes)
    gens = []
    for n in sizes:
        p = n // 4
        ids = torch.randint(0, vocab_limit, (n + 1,), generator=g).tolist()
        gens.append(Generation(ids[:p], ids[p:], [-1.0] * (n + 1 - p), "length"))
    batch = RolloutBatch.from_generations(gens, torch.zeros(rows), {}, 0, agreed_length(gens, 16))
    batch.advantages = torch.randn(rows, generator=g)
    return batch


def measure(fn) -> tuple[float, float]:
    """(seconds, peak GiB allocated above what was allocated before) of one call; on a machine
    without CUDA (a smoke run of the script) the memory is reported as 0."""
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated() if cuda else 0
    t = time.perf_counter()
    fn()
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - t, (torch.cuda.max_memory_allocated() - base) / 2**30 if cuda else 0.0


def main(argv=None) -> int:
    args = parse(argv if argv is not None else sys.argv[1:])
    from megatron.core.pipeline_parallel import get_forward_backward_func

    from r1mega.config.compose import compose, hydra_session
    from r1mega.rl.forward import logprob_step
    from r1mega.rl.packing import Layout, schedule_shape, split
    from r1mega.stages.lifecycle import start
    from r1mega.training.setup import build_train_model
    from r1mega.training.step import forward_only

    with hydra_session():
        gpu = ["model.spec=te", "trainer.precision.dtype=bf16"] if torch.cuda.is_available() else []
        cfg = compose([*gpu, *args.overrides])
    cfg.run_dir = "/tmp/bench_logprobs"
    dims = cfg.validate(1)
    start(cfg, dims)
    tm = build_train_model(cfg.model, dims, cfg.optim, cfg.trainer, cfg.parallel.distributed_optimizer)
    batch = make_batch(args.rows, args.tokens, args.vocab_limit, args.spread)
    rows = list(range(args.rows))
    layouts = {"padded": Layout(args.mbs, None, 0, 16)}
    if args.packed:
        layouts["packed"] = Layout(args.mbs, args.packed, 0, 16)
    legacy_fwd, legacy_train = legacy_steps(1.0, args.vocab_limit)
    cases = {}
    for lname, layout in layouts.items():
        _, mbs = split(batch, rows, layout)
        seq, mbs_arg = schedule_shape(mbs, layout)
        paths = {"lean": (logprob_step(1.0, args.vocab_limit), lean_train_step(1.0, args.vocab_limit))}
        if lname == "padded":
            paths["legacy"] = (legacy_fwd, legacy_train)
        for pname, (fstep, tstep) in paths.items():
            cases[f"{pname}/{lname}/logprobs"] = lambda f=fstep, m=mbs, s=seq, a=mbs_arg: forward_only(tm, f, m, s, a)

            def train(t=tstep, m=mbs, s=seq, a=mbs_arg):
                tm.train()
                get_forward_backward_func()(forward_step_func=t, data_iterator=iter(m), model=tm.chunks,
                                            num_microbatches=len(m), seq_length=s, micro_batch_size=a,
                                            forward_only=False)
                for c in tm.chunks:
                    c.zero_grad_buffer()

            cases[f"{pname}/{lname}/train"] = train
    results = {k: {"time": [], "peak_gib": []} for k in cases}
    for name, fn in cases.items():  # warm-up (kernels, allocator)
        fn()
    for _ in range(args.repeats):
        for name, fn in cases.items():
            t, peak = measure(fn)
            results[name]["time"].append(t)
            results[name]["peak_gib"].append(peak)
    scale = 8192 / args.tokens
    rows_out = []
    for name, r in results.items():
        rows_out.append({"case": name, "time_s_per_8k": statistics.median(r["time"]) * scale,
                         "peak_gib_per_8k": statistics.median(r["peak_gib"]) * scale})
    meta = {"gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu", "tokens": args.tokens,
            "padded_tokens": batch.tokens.numel(), "rows": args.rows, "mbs": args.mbs, "spread": args.spread,
            "overrides": args.overrides, "vocab_size": cfg.model.vocab_size, "vocab_limit": args.vocab_limit}
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "results": rows_out}, indent=2) + "\n")
    print(json.dumps(meta))
    print(f"{'case':<28} {'s per 8k tok':>14} {'GiB per 8k tok':>16}")
    for r in rows_out:
        print(f"{r['case']:<28} {r['time_s_per_8k']:>14.4f} {r['peak_gib_per_8k']:>16.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
