"""GPU checks of rollout.engine=vllm and the weight bridge (run by tools/device/vllm_check.sh).

    python tools/device/vllm_check.py logprobs --model qwen2_5_1_5b --out $OUT [--fp8] [--separate]
    python tools/device/vllm_check.py bandwidth --out $OUT

``logprobs`` (one process; colocated = CUDA IPC, ``--separate`` = NCCL to a second GPU):
  1. random-weight Megatron model (bf16, TE spec), output layer scaled by --logit-scale so the
     next-token distributions are far from uniform (else every log-prob is ~ -log V and any
     comparison passes trivially; the mean sampled log-prob is printed to show it);
  2. start vLLM through r1mega's engine, sync (first sync records the plan), time 3 more syncs;
  3. sample, then recompute the same sequences' log-probs with the Megatron forward the GRPO
     trainer uses; report mean / max |delta|;
  4. perturb every Megatron weight (noise of 0.2x each tensor's std): the *stale* vLLM samples
     must now disagree with Megatron (shows the perturbation is visible), then sync and sample
     again: agreement must be back (fails if the sync silently did nothing);
  5. throughput: the same prompts through vllm.LLM.generate directly and through the engine.
Every figure goes to <out>/vllm_check_<tag>.json and one line per check to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

# bf16 tolerances, argued: both sides run bf16 weights and activations (8-bit mantissa, unit
# roundoff 2^-9 ~ 2e-3) with fp32 accumulation but different kernels (TE/cuBLAS GEMMs and
# fused attention vs vLLM's GEMMs and FlashAttention/MLA), so each logit carries a relative
# error of a few 1e-3 times its magnitude after tens of layers; a log-prob, a difference of a
# logit and a log-sum-exp, inherits ~|logit| * 1e-2 at worst. With logits of O(1-10) that gives
# mean |delta| of order 1e-2 and rare tokens up to a few 1e-1. Published vLLM-vs-trainer bf16
# mismatches sit in the same range (mean ~1e-2). FP8 adds the e4m3 weight rounding (2^-4
# relative), so its bounds are wider.
# The mean bound is set by what two *correct* bf16 implementations give on the same tokens: on
# the 28-layer Qwen2-1.5B shape, HF transformers and Megatron (TE) differ by 0.031 mean / 0.12
# p99 (measured with --hf-check, docs/results/2026-11-24-h200-vllm.md), so vLLM-vs-Megatron is held
# to 0.05 mean. The max over thousands of tokens is reported, not bounded: a random model has
# near-ties between its top tokens, where one bf16 rounding moves one token's log-prob by tenths
# of a nat while the distribution as a whole agrees; the 99th percentile bounds the bulk.
TOL = {"bf16": {"mean": 0.05, "p99": 0.5}, "fp8": {"mean": 0.15, "p99": 3.0}}
STALE_FACTOR = 3.0  # stale-weights mean delta must exceed the resynced one by this factor


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from r1mega.config.schema import to_config
    from r1mega.config.paths import conf_dir
    from r1mega.config.store import register

    register()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return to_config(hydra_compose(config_name="config", overrides=overrides))


def megatron_logprobs(tm, gens, pad_id, temperature, vocab_limit):
    import torch

    from r1mega.rl.batch import RolloutBatch, agreed_length
    from r1mega.rl.forward import logprob_step
    from r1mega.training.step import forward_only

    rollout = RolloutBatch.from_generations(gens, torch.zeros(len(gens)), {}, pad_id, agreed_length(gens))
    mbs = 8
    batches = rollout.micro_batches(list(range(len(rollout))), mbs)
    out = forward_only(tm, logprob_step(temperature, vocab_limit), batches, rollout.seq_length, mbs)
    logp = torch.cat([o["logp"] for o in out])
    return logp, rollout


def compare(tm, gens, pad_id, temperature, vocab_limit) -> dict:
    logp, rollout = megatron_logprobs(tm, gens, pad_id, temperature, vocab_limit)
    m = rollout.mask.bool()
    d = (logp - rollout.rollout_logp).abs()[m]
    ratio = (rollout.rollout_logp - logp)[m]
    k3 = (ratio.exp() - 1 - ratio).mean()  # KL(rollout || trainer) estimator, as the GRPO metrics
    return {"tokens": int(m.sum()), "mean_abs_delta": float(d.mean()), "max_abs_delta": float(d.max()),
            "p99_abs_delta": float(d.quantile(0.99)), "mismatch_kl_k3": float(k3),
            "mean_sampled_logp": float(rollout.rollout_logp[m].mean())}


def hf_logprobs(tm, model_cfg, rollout, vocab_limit):
    """Per-token log-probs of the same sequences from HF transformers, built from the weights the
    bridge streams (the third opinion that tells which of Megatron / vLLM disagrees)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from r1mega.convert.export_stream import iter_hf_tensors
    from r1mega.convert.mappings import hf_config_from_model

    raw = hf_config_from_model(model_cfg, dtype="bfloat16")
    config = AutoConfig.for_model(raw.pop("model_type"), **{k: v for k, v in raw.items() if k != "architectures"})
    with torch.device("cuda"):
        hf = AutoModelForCausalLM.from_config(config, torch_dtype=torch.bfloat16)
    state = dict(iter_hf_tensors(tm.unwrapped(), model_cfg))
    missing, unexpected = hf.load_state_dict(state, strict=False)
    print(f"HF load: missing={list(missing)[:5]} unexpected={list(unexpected)[:5]}")
    hf.eval()
    out = []
    with torch.no_grad():
        for i in range(0, rollout.tokens.shape[0], 8):
            tok = rollout.tokens[i:i + 8].cuda()
            logits = hf(input_ids=tok).logits.float()
            logits[..., vocab_limit:] = -1.0e4
            logp = torch.log_softmax(logits, -1).gather(-1, rollout.labels[i:i + 8].cuda().unsqueeze(-1)).squeeze(-1)
            out.append(logp.cpu())
    del hf
    torch.cuda.empty_cache()
    return torch.cat(out)


def three_way(tm, model_cfg, gens, pad_id, vocab_limit) -> dict:
    logp, rollout = megatron_logprobs(tm, gens, pad_id, 1.0, vocab_limit)
    hf = hf_logprobs(tm, model_cfg, rollout, vocab_limit)
    m = rollout.mask.bool()
    pairs = {"hf_vs_megatron": (hf, logp), "hf_vs_vllm": (hf, rollout.rollout_logp),
             "megatron_vs_vllm": (logp, rollout.rollout_logp)}
    return {k: {"mean": float((a - b).abs()[m].mean()), "p99": float((a - b).abs()[m].quantile(0.99))}
            for k, (a, b) in pairs.items()}


def copy_bandwidth(gib: float = 1.0, reps: int = 10) -> float:
    """Device-to-device torch copy, GB/s of bytes copied (each byte read once, written once)."""
    import torch

    n = int(gib * 2**30) // 2
    a = torch.empty(n, dtype=torch.bfloat16, device="cuda").normal_()
    b = torch.empty_like(a)
    b.copy_(a)
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(reps):
        b.copy_(a)
    torch.cuda.synchronize()
    return reps * a.numel() * 2 / (time.perf_counter() - t) / 1e9


def random_prompts(n: int, vocab_limit: int, lo: int, hi: int, seed: int) -> list:
    import torch

    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(lo, hi + 1, (n,), generator=g)
    return [torch.randint(3, vocab_limit, (int(k),), generator=g).tolist() for k in lengths]


def perturb(tm, scale: float, seed: int) -> None:
    import torch

    g = torch.Generator(device="cuda").manual_seed(seed)
    with torch.no_grad():
        for chunk in tm.unwrapped():
            for p in chunk.parameters():
                if p.numel() > 1 and p.is_floating_point():
                    p.add_(torch.randn(p.shape, generator=g, device=p.device, dtype=torch.float32).to(p.dtype)
                           * (scale * p.float().std()))


def scale_output(tm, factor: float) -> None:
    import torch

    with torch.no_grad():
        for chunk in tm.unwrapped():
            gpt = getattr(chunk, "module", chunk)  # Float16Module -> GPTModel
            tied = getattr(gpt, "share_embeddings_and_output_weights", False)
            for name, p in gpt.named_parameters():
                if name.endswith("output_layer.weight") or (tied and name.endswith("word_embeddings.weight")):
                    p.mul_(factor)


def run_logprobs(args) -> dict:
    import torch

    from r1mega.data.tokenizer import load_tokenizer
    from r1mega.rollout.base import SamplingParams
    from r1mega.rollout.factory import build_engine
    from r1mega.stages import lifecycle
    from r1mega.training.setup import build_train_model

    tag = args.tag or f"{args.model}{'_fp8' if args.fp8 else ''}{'_separate' if args.separate else ''}"
    out_dir = Path(args.out)
    overrides = [f"model={args.model}", "model.spec=te", "trainer.precision.dtype=bf16", "rollout=vllm",
                 f"rollout.vllm.enforce_eager={str(not args.cuda_graphs).lower()}",
                 f"rollout.vllm.gpu_memory_utilization={args.gpu_mem}", f"rollout.max_tokens={args.max_tokens}",
                 f"data.seq_length={args.seq_length}", f"rollout.vllm.fp8={str(args.fp8).lower()}",
                 f"rollout.vllm.colocate={str(not args.separate).lower()}",
                 f"rollout.vllm.sleep_level={args.sleep_level}", f"rollout.vllm.bucket_mb={args.bucket_mb}",
                 "trainer.global_batch_size=64", "trainer.micro_batch_size=8",
                 f"hydra.run.dir={out_dir / ('run_' + tag)}", *args.override]
    if args.attention_backend:
        overrides.append(f"rollout.vllm.attention_backend={args.attention_backend}")
    cfg = compose(overrides)
    cfg.run_dir = str(out_dir / f"run_{tag}")
    dims = cfg.validate(1)
    lifecycle.start(cfg, dims)
    tm = build_train_model(cfg.model, dims, cfg.optim, cfg.trainer, cfg.parallel.distributed_optimizer)
    scale_output(tm, args.logit_scale)
    tok = load_tokenizer(cfg.data.tokenizer)
    vocab_limit = len(tok)
    res: dict = {"tag": tag, "model": args.model, "fp8": args.fp8, "separate": args.separate,
                 "params_b": sum(p.numel() for c in tm.unwrapped() for p in c.parameters()) / 1e9,
                 "tolerance": TOL["fp8" if args.fp8 else "bf16"]}
    t = time.perf_counter()
    engine = build_engine(cfg, tok, dims, tm=tm)
    res["engine_start_s"] = time.perf_counter() - t
    syncs = []
    for _ in range(4):
        engine.update_weights()
        s = engine.last_sync
        syncs.append({"s": s.seconds, "GB": s.bytes / 1e9, "GBps": s.gbps, "buckets": s.buckets,
                      "tensors": s.tensors, "unloaded": s.unloaded})
    res["sync_first"] = syncs[0]
    res["sync_steady"] = {"s": min(x["s"] for x in syncs[1:]), "GB": syncs[-1]["GB"],
                          "GBps": max(x["GBps"] for x in syncs[1:]), "buckets": syncs[-1]["buckets"]}
    res["unloaded"] = syncs[0]["unloaded"]
    res["plan"] = engine.bridge.plan.summary()
    res["copy_GBps"] = copy_bandwidth()
    res["sync_vs_copy"] = res["sync_steady"]["GBps"] / res["copy_GBps"]
    prompts = random_prompts(args.num_prompts, vocab_limit, 8, 48, seed=1)
    params = SamplingParams(temperature=1.0, max_tokens=args.max_tokens, seed=7)
    gens = engine.generate(prompts, params)
    res["synced"] = compare(tm, gens, tok.pad_token_id, 1.0, vocab_limit)
    if args.hf_check:
        res["three_way"] = three_way(tm, cfg.model, gens, tok.pad_token_id, vocab_limit)
        print("THREEWAY", json.dumps(res["three_way"]))
    # a sync that silently does nothing must fail here
    perturb(tm, args.perturb, seed=3)
    res["stale"] = compare(tm, gens, tok.pad_token_id, 1.0, vocab_limit)
    engine.update_weights()
    gens2 = engine.generate(prompts, params)
    res["resynced"] = compare(tm, gens2, tok.pad_token_id, 1.0, vocab_limit)
    res["tokens_changed_fraction"] = sum(a.token_ids != b.token_ids for a, b in zip(gens, gens2)) / len(gens)
    if args.throughput:
        res["throughput"] = throughput(engine, vocab_limit, args)
    tol = res["tolerance"]
    checks = {
        "logprob_mean": res["synced"]["mean_abs_delta"] <= tol["mean"],
        "logprob_p99": res["synced"]["p99_abs_delta"] <= tol["p99"],
        "resync_mean": res["resynced"]["mean_abs_delta"] <= tol["mean"],
        "resync_p99": res["resynced"]["p99_abs_delta"] <= tol["p99"],
        "stale_detected": res["stale"]["mean_abs_delta"] >= STALE_FACTOR * max(res["resynced"]["mean_abs_delta"], 1e-6),
        "no_unloaded_params": not res["unloaded"],
    }
    if "throughput" in res:
        checks["engine_within_5pct"] = res["throughput"]["engine_vs_direct"] >= 0.95
    res["checks"] = checks
    (out_dir / f"vllm_check_{tag}.json").write_text(json.dumps(res, indent=2) + "\n")
    engine.shutdown()
    return res


def throughput(engine, vocab_limit: int, args) -> dict:
    """Same prompts and sampling, driven through vllm.LLM.generate directly and through the engine."""
    from r1mega.rollout.base import SamplingParams
    from r1mega.rollout.vllm_engine import request_seed

    prompts = random_prompts(args.bench_prompts, vocab_limit, 64, 64, seed=11)
    params = SamplingParams(temperature=1.0, max_tokens=args.bench_tokens, seed=5)
    engine.wake_up()
    llm = engine.llm
    sps = [engine.sampling_params(params, request_seed(params.seed, 0, (0, i))) for i in range(len(prompts))]
    inputs = [{"prompt_token_ids": p} for p in prompts]
    llm.generate(inputs[:8], sps[:8], use_tqdm=False)  # warm-up
    out: dict = {"direct": [], "engine_run": []}
    for _ in range(3):  # alternate, so drift (clocks, allocator) hits both sides alike
        for label in ("direct", "engine_run"):
            t = time.perf_counter()
            if label == "direct":
                gens = llm.generate(inputs, sps, use_tqdm=False)
                ntok = sum(len(g.outputs[0].token_ids) for g in gens)
            else:
                gens = engine._run(prompts, [(0, i) for i in range(len(prompts))], params, 0)
                ntok = sum(len(g.token_ids) for g in gens)
            out[label].append(ntok / (time.perf_counter() - t))
    for label in ("direct", "engine_run"):
        runs = sorted(out[label])
        out[label] = {"tokens_per_s": runs[1], "runs": runs}  # the median of 3
    t = time.perf_counter()
    gens = engine.generate(prompts, params)  # with the colocated wake/sleep (and level-2 re-sync)
    dt = time.perf_counter() - t
    out["engine_generate"] = {"s": dt, "tokens": sum(len(g.token_ids) for g in gens),
                              "tokens_per_s": sum(len(g.token_ids) for g in gens) / dt}
    direct = out["direct"]["tokens_per_s"]
    out["engine_vs_direct"] = out["engine_run"]["tokens_per_s"] / direct
    out["engine_generate_vs_direct"] = out["engine_generate"]["tokens_per_s"] / direct
    return out


def print_row(res: dict) -> None:
    s, r, st = res["synced"], res["resynced"], res["stale"]
    print(f"RESULT {res['tag']}: params={res['params_b']:.3f}B start={res['engine_start_s']:.0f}s "
          f"sync={res['sync_steady']['s']:.3f}s ({res['sync_steady']['GB']:.2f} GB, {res['sync_steady']['GBps']:.1f} GB/s "
          f"= {100 * res['sync_vs_copy']:.1f}% of copy {res['copy_GBps']:.0f} GB/s; first {res['sync_first']['s']:.2f}s) "
          f"| dlogp mean={s['mean_abs_delta']:.2e} max={s['max_abs_delta']:.2e} p99={s['p99_abs_delta']:.2e} "
          f"k3={s['mismatch_kl_k3']:.1e} (mean logp {s['mean_sampled_logp']:.2f}) | stale mean={st['mean_abs_delta']:.2e} "
          f"resynced mean={r['mean_abs_delta']:.2e} max={r['max_abs_delta']:.2e} changed={res['tokens_changed_fraction']:.2f}")
    if "throughput" in res:
        t = res["throughput"]
        print(f"RESULT {res['tag']} throughput tok/s: direct={t['direct']['tokens_per_s']:.0f} "
              f"(runs {[round(x) for x in t['direct']['runs']]}) engine={t['engine_run']['tokens_per_s']:.0f} "
              f"({100 * t['engine_vs_direct']:.1f}%) engine+wake/sleep={t['engine_generate']['tokens_per_s']:.0f} "
              f"({100 * t['engine_generate_vs_direct']:.1f}%)")
    print(f"CHECKS {res['tag']}: " + " ".join(f"{k}={'PASS' if v else 'FAIL'}" for k, v in res["checks"].items()))
    if res["unloaded"]:
        print(f"UNLOADED {res['tag']}: {res['unloaded']}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    lp = sub.add_parser("logprobs")
    lp.add_argument("--model", default="qwen2_5_1_5b")
    lp.add_argument("--out", default=os.environ.get("OUT", "/tmp/out"))
    lp.add_argument("--tag", default="")
    lp.add_argument("--fp8", action="store_true")
    lp.add_argument("--separate", action="store_true", help="vLLM on its own GPU (NCCL transport)")
    lp.add_argument("--cuda-graphs", action="store_true", help="do not pass enforce_eager")
    lp.add_argument("--gpu-mem", type=float, default=0.35)
    lp.add_argument("--sleep-level", type=int, default=2)
    lp.add_argument("--bucket-mb", type=int, default=512)
    lp.add_argument("--max-tokens", type=int, default=64)
    lp.add_argument("--seq-length", type=int, default=256)
    lp.add_argument("--num-prompts", type=int, default=64)
    lp.add_argument("--logit-scale", type=float, default=2.0)
    lp.add_argument("--perturb", type=float, default=0.2)
    lp.add_argument("--throughput", action="store_true")
    lp.add_argument("--hf-check", action="store_true", help="also compare with HF transformers")
    lp.add_argument("--bench-prompts", type=int, default=512)
    lp.add_argument("--bench-tokens", type=int, default=256)
    lp.add_argument("--attention-backend", default="")
    lp.add_argument("--override", nargs="*", default=[], help="extra Hydra overrides, e.g. model.kv_lora_rank=512")
    bw = sub.add_parser("bandwidth")
    bw.add_argument("--out", default=os.environ.get("OUT", "/tmp/out"))
    args = p.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    if args.cmd == "bandwidth":
        print(f"RESULT copy bandwidth: {copy_bandwidth():.0f} GB/s")
        return 0
    res = run_logprobs(args)
    print_row(res)
    return 0 if all(res["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
