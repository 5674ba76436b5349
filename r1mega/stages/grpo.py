"""Stages ``r1_zero`` and ``reasoning_rl``: GRPO on Megatron-Core.

One RL step, top to bottom:

1. rollout   - this DP rank's prompts, G responses each, from the rollout engine;
2. reward    - rule-based rewards per response (``r1mega.rewards``), optional overlong shaping;
3. log-probs - old policy (when updates are off-policy or the mismatch correction needs it)
               and the frozen reference (when ``rl.kl_beta > 0``), through Megatron's schedules;
4. advantage - group-relative ((r - mean) / std, or the configured estimator);
5. train     - ``rl.ppo_epochs`` x ``rl.num_minibatches`` optimizer steps on the rollout batch,
               each normalised by the global token/sequence count of its mini-batch;
6. sync      - push the new weights into the rollout engine.

``trainer.global_batch_size`` is the rollout batch in *responses* (prompts x G) over all DP
ranks; ``trainer.max_steps`` counts RL steps. Held-out pass@1 is measured before, every
``trainer.eval_interval`` steps, and after, and lands in ``summary.json``.
"""

from __future__ import annotations

import dataclasses
import time

import torch

from r1mega.config.schema import R1Config
from r1mega.data.loaders import load_split
from r1mega.data.sampler import EpochSampler, rank_slice
from r1mega.data.templates import render_prompt
from r1mega.data.tokenizer import load_tokenizer
from r1mega.eval.runner import accuracy_of, evaluate, write_samples
from r1mega.parallel.dims import ParallelDims
from r1mega.rl import advantages as adv_mod
from r1mega.rl import replay
from r1mega.rl.batch import agreed_length, build_rollout, micro_batches
from r1mega.rl.forward import grpo_step, logprob_step
from r1mega.rl.losses import global_loss_denominator, megatron_loss_scale, rollout_correction
from r1mega.rollout.base import SamplingParams
from r1mega.stages import common
from r1mega.stages.sft import check_vocab
from r1mega.training import checkpoint as ckpt
from r1mega.training.metrics import MetricsLogger, write_summary
from r1mega.training.plots import plot_curves
from r1mega.training.setup import build_chunks, build_train_model
from r1mega.training.step import forward_only, train_step


def make_engine(cfg: R1Config, tm, tokenizer, dims: ParallelDims):
    from megatron.core import parallel_state as ps

    from r1mega.rollout.factory import build_engine

    return build_engine(cfg, tokenizer, dims, tm=tm, seed_offset=ps.get_data_parallel_rank() * 7919)


def encode(records: list[dict], tokenizer, template: str) -> list[list[int]]:
    return [tokenizer(render_prompt(tokenizer, r["prompt"], template), add_special_tokens=False)["input_ids"]
            for r in records]


def score(rewarder, gens, records, group_size: int) -> tuple[torch.Tensor, dict]:
    items = [{"completion": g.text, "answer": records[i // group_size].get("answer"),
              "data_source": records[i // group_size]["data_source"],
              "tests": records[i // group_size].get("tests"), "prompt": records[i // group_size]["prompt"]}
             for i, g in enumerate(gens)]
    items = [{k: v for k, v in it.items() if v is not None} for it in items]
    results = rewarder.score_batch(items)
    rewards = torch.tensor([r.reward for r in results], dtype=torch.float32)
    comps = {"accuracy": torch.tensor([accuracy_of(r) for r in results])}
    if all("format" in r.components for r in results):
        comps["format_rate"] = torch.tensor([float(r.components["format"] > 0) for r in results])
    comps["reward_errors"] = torch.tensor([float(r.error is not None) for r in results])
    return rewards, comps


def old_and_ref_logprobs(cfg, tm, ref_chunks, batches, seq_len, mbs, vocab_limit, need_old):
    """Per-token log-probs of the current (old) policy and of the reference, [N, L] each."""
    from megatron.core import parallel_state as ps

    out = {}
    step = logprob_step(cfg.rollout.temperature, vocab_limit)
    if need_old:
        out["old_logp"] = forward_only(tm, step, batches, seq_len, mbs)
    if ref_chunks is not None:
        from r1mega.training.setup import TrainModel

        ref = TrainModel(ref_chunks, None, None, tm.model_cfg, tm.dims)
        out["ref_logp"] = forward_only(ref, step, batches, seq_len, mbs)
    if not ps.is_pipeline_last_stage():
        shape = (sum(b["tokens"].shape[0] for b in batches), batches[0]["tokens"].shape[1])
        return {k: torch.zeros(shape) for k in out}
    return {k: torch.cat([o["logp"] for o in v]) for k, v in out.items()}


def run(cfg: R1Config, dims: ParallelDims, make_rewarder=None, train_records=None) -> dict:
    """make_rewarder(cfg) -> object with score_batch/close (default RewardManager(cfg.reward));
    train_records replaces the train split (stage all_scenario_rl passes both)."""
    from megatron.core import parallel_state as ps

    rl, G = cfg.rl, cfg.rl.group_size
    run_dir = common.start(cfg, dims)
    tokenizer = load_tokenizer(cfg.data.tokenizer)
    check_vocab(tokenizer, cfg)
    vocab_limit = len(tokenizer)
    train = train_records if train_records is not None else load_split(cfg.data, "train", need_response=False)[0]
    test, _ = load_split(cfg.data, "test", need_response=False)
    prompts_per_step = cfg.trainer.global_batch_size // G
    sampler = EpochSampler(len(train), prompts_per_step, cfg.trainer.seed, cfg.data.shuffle)
    updates = rl.ppo_epochs * rl.num_minibatches
    optim = dataclasses.replace(cfg.optim, decay_steps=cfg.optim.decay_steps or cfg.trainer.max_steps * updates)
    tm = build_train_model(cfg.model, dims, optim, cfg.trainer, cfg.parallel.distributed_optimizer)
    ckpt_dir, start_step, label = common.checkpoint_dir(cfg), 0, cfg.stage.label or cfg.stage.name
    init = ckpt.latest_checkpoint(cfg.trainer.init_from) if cfg.trainer.init_from else None
    if cfg.trainer.init_from and init is None:
        raise ValueError(f"trainer.init_from={cfg.trainer.init_from!r} holds no complete checkpoint")
    ref_chunks = None
    if rl.needs_reference:
        ref_chunks = build_chunks(cfg.model, dims, cfg.trainer.precision)
        if init is not None:
            ckpt.load_model_weights(init, ref_chunks)
        else:
            for r, p in zip(ref_chunks, tm.unwrapped()):
                r.load_state_dict(p.state_dict())
        for r in ref_chunks:
            r.requires_grad_(False)
    latest = ckpt.latest_checkpoint(ckpt_dir) if cfg.trainer.resume else None
    engine = make_engine(cfg, tm, tokenizer, dims)
    if latest is not None:
        meta = ckpt.load_checkpoint(latest, tm)
        start_step = meta["iteration"]
        sampler.load_state_dict(meta["data"])
        engine.calls = meta.get("engine_calls", 0)
    elif init is not None:
        ckpt.init_from(init, tm)
    engine.update_weights()
    if cfg.rl.record_dir and start_step == 0:  # replays start from these weights (r1mega.rl.replay)
        ckpt.save_model_weights(replay.init_dir(cfg.rl.record_dir), tm)

    from r1mega.rewards import RewardManager

    rewarder = make_rewarder(cfg) if make_rewarder is not None else RewardManager(cfg.reward)
    logger = MetricsLogger(run_dir, label, cfg.trainer.max_steps, common.is_logging_rank(), cfg.trainer.progress)
    logger.resume_at(start_step)
    dp, dp_rank, dp_group = dims.dp, ps.get_data_parallel_rank(), ps.get_data_parallel_group()
    mbs = cfg.trainer.micro_batch_size
    eval_max = cfg.evaluation.max_tokens or cfg.rollout.max_tokens

    def run_eval(tag: str) -> dict:
        result = evaluate(engine, tokenizer, test, cfg.data.template, rewarder, cfg.evaluation.k,
                          cfg.evaluation.temperature, cfg.evaluation.top_p, eval_max,
                          seed=cfg.trainer.seed + 17, dp_group=dp_group,
                          keep_samples=cfg.evaluation.save_samples)
        samples = result.pop("samples", None)
        if common.is_logging_rank():
            write_summary(run_dir, {f"eval_{tag}": result})
            if samples is not None:
                write_samples(run_dir / f"eval_samples_{tag}.jsonl", samples)
        return result

    before = run_eval("before") if start_step == 0 else None
    sampling = SamplingParams(cfg.rollout.temperature, cfg.rollout.top_p, cfg.rollout.top_k,
                              cfg.rollout.max_tokens, list(cfg.rollout.stop), seed=cfg.trainer.seed)
    t_start = time.perf_counter()
    for step in range(start_step + 1, cfg.trainer.max_steps + 1):
        timings = {}
        # 1. rollout
        t = time.perf_counter()
        batch = sampler.next_batch()
        records = [train[i] for i in rank_slice(batch, dp_rank, dp)]
        prompts = encode(records, tokenizer, cfg.data.template)
        if cfg.rl.replay_dir:
            gens, rewards, comps = replay.replay_step(cfg.rl.replay_dir, step, batch, prompts, G,
                                                      cfg.rollout.max_tokens, dp_rank, dp)
        else:
            gens = engine.generate([p for p in prompts for _ in range(G)], sampling)
        timings["time_rollout"] = time.perf_counter() - t
        # 2. reward
        t = time.perf_counter()
        if not cfg.rl.replay_dir:
            rewards, comps = score(rewarder, gens, records, G)
        if cfg.rl.record_dir:
            replay.record_step(cfg.rl.record_dir, step, batch, prompts, gens, rewards, comps, G, dp_group)
        # One row length on every rank: pipeline stages exchange [length, mbs, hidden] tensors,
        # and results do not depend on the DP size (padding positions pass the MoE routers).
        rollout = build_rollout(gens, tokenizer.pad_token_id,
                                agreed_length(gens, dims.pad_multiple(torch.cuda.is_available())))
        if rl.overlong == "penalty":
            rewards = rewards + adv_mod.overlong_penalty(rollout.lengths, cfg.rollout.max_tokens,
                                                         rl.overlong_buffer_len, rl.overlong_penalty_factor)
        mask = rollout.mask
        if rl.overlong == "mask":
            mask = adv_mod.overlong_filter_mask(mask, rollout.truncated)
        rollout.mask = mask
        timings["time_reward"] = time.perf_counter() - t
        # 3. old-policy and reference log-probs
        t = time.perf_counter()
        rows = list(range(len(rollout)))
        need_old = updates > 1 or rl.rollout_is_correction != "none" or rl.kl_in_reward
        per_token = old_and_ref_logprobs(cfg, tm, ref_chunks, micro_batches(rollout, {}, {}, rows, mbs),
                                         _seq_len(rollout), mbs, vocab_limit, need_old)
        mismatch = {}
        if rl.rollout_is_correction != "none":
            corr = rollout_correction(per_token["old_logp"], rollout.rollout_logp, rollout.mask,
                                      rl.rollout_is_correction, rl.rollout_is_cap)
            rollout.mask = corr.mask
            if corr.weights is not None:
                per_token["is_weights"] = corr.weights
            # only the last pipeline stage holds trainer log-probs; the others have zeros
            mismatch = common.broadcast_from_last_stage({k: float(v) for k, v in corr.metrics.items()})
        timings["time_logprobs"] = time.perf_counter() - t
        # 4. advantage
        if rl.kl_in_reward and "ref_logp" in per_token:
            from r1mega.rl.losses import kl_penalty

            kl = kl_penalty(per_token["old_logp"], per_token["ref_logp"], rl.kl_estimator)
            rewards = adv_mod.kl_penalized_rewards(rewards, kl, rollout.mask, rl.kl_beta)
        advantages, group_stats = adv_mod.compute_advantages(rewards, G, rl.adv_estimator, rl.adv_eps)
        # 5. train
        t = time.perf_counter()
        train_metrics = _update(cfg, tm, rollout, {"advantages": advantages}, per_token, dims, vocab_limit)
        timings["time_train"] = time.perf_counter() - t
        # 6. weight sync
        t = time.perf_counter()
        engine.update_weights()
        timings["time_sync"] = time.perf_counter() - t
        m = _step_metrics(rewards, comps, rollout, gens, group_stats, train_metrics, mismatch, timings, dp_group,
                          rl.ppo_epochs)
        logger.log(step, m)
        if cfg.trainer.eval_interval and step % cfg.trainer.eval_interval == 0 and step < cfg.trainer.max_steps:
            logger.log(step, {f"eval_{k}": v for k, v in run_eval(f"step{step}").items()})
        if step == cfg.trainer.max_steps or (cfg.trainer.save_interval and step % cfg.trainer.save_interval == 0):
            ckpt.save_checkpoint(ckpt_dir, step, tm, {"data": sampler.state_dict(), "stage": label,
                                                      "engine_calls": engine.calls}, keep=cfg.trainer.keep_checkpoints)
            if common.is_logging_rank():
                tokenizer.save_pretrained(str(ckpt_dir))
    logger.close()
    after = run_eval("after")
    summary = {"stage": label, "steps": cfg.trainer.max_steps, "resumed_from": start_step,
               "wall_time_s": time.perf_counter() - t_start, "checkpoint": str(ckpt.latest_checkpoint(ckpt_dir))}
    if before is not None:
        summary["pass@1_gain"] = after["pass@1"] - before["pass@1"]
    if common.is_logging_rank():
        write_summary(run_dir, summary)
        if cfg.trainer.plots:
            plot_curves(logger.history, ["reward_mean", "accuracy", "response_length_mean", "kl_ref", "entropy"],
                        run_dir / f"{label}_curves.png", label)
    rewarder.close()
    common.finish()
    return summary


def _seq_len(rollout):
    return rollout.tokens.shape[1]


def _update(cfg, tm, rollout, per_sample, per_token, dims, vocab_limit) -> dict:
    """ppo_epochs x num_minibatches optimizer steps; returns averaged metrics."""
    from megatron.core import parallel_state as ps

    rl, mbs = cfg.rl, cfg.trainer.micro_batch_size
    n = len(rollout)
    per_mini = n // rl.num_minibatches
    gen = torch.Generator().manual_seed(cfg.trainer.seed + tm.scheduler.num_steps)
    totals: dict = {}
    for _ in range(rl.ppo_epochs):
        order = torch.randperm(n, generator=gen).tolist() if rl.num_minibatches > 1 else list(range(n))
        for j in range(rl.num_minibatches):
            batches = micro_batches(rollout, per_sample, per_token, order[j * per_mini:(j + 1) * per_mini], mbs)
            denom = global_loss_denominator([b["mask"] for b in batches], rl.loss_agg, group=ps.get_data_parallel_group())
            scale = megatron_loss_scale(len(batches), dims.dp)
            step = grpo_step(rl, cfg.rollout.temperature, vocab_limit, max(denom, 1), scale)
            m = _sum_over_dp(common.broadcast_from_last_stage(train_step(tm, step, batches, _seq_len(rollout), mbs)))
            nmb = max(m.pop("microbatches", 1.0), 1.0)
            for k, v in m.items():
                v = v / nmb if k not in ("grad_norm", "lr", "update_successful", "step_time", "loss") else v
                totals[k] = totals.get(k, 0.0) + v / updates_of(rl)
    return totals


GLOBAL_KEYS = ("grad_norm", "lr", "update_successful", "step_time")


def _sum_over_dp(m: dict) -> dict:
    """Loss-function outputs summed over the DP ranks (every rank has the same keys and as many
    micro-batches), so the loss is the whole batch's and the per-micro-batch averages taken
    later are over all micro-batches: the logged values do not depend on the DP size."""
    import torch.distributed as dist
    from megatron.core import parallel_state as ps

    group = ps.get_data_parallel_group()
    if not dist.is_initialized() or dist.get_world_size(group) == 1:
        return m
    keys = sorted(k for k in m if k not in GLOBAL_KEYS)
    device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else None
    t = torch.tensor([float(m[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t, group=group)
    return {**m, **dict(zip(keys, t.tolist()))}


def updates_of(rl) -> int:
    return rl.ppo_epochs * rl.num_minibatches


def _step_metrics(rewards, comps, rollout, gens, group_stats, train_metrics, mismatch, timings, dp_group,
                  ppo_epochs: int = 1) -> dict:
    import torch.distributed as dist

    local = {
        "reward_sum": float(rewards.sum()), "reward_sq": float((rewards**2).sum()), "n": float(len(rewards)),
        "acc_sum": float(comps["accuracy"].sum()), "len_sum": float(rollout.lengths.sum()),
        "len_max": float(rollout.lengths.max()), "trunc": float(rollout.truncated.sum()),
        "fmt_sum": float(comps.get("format_rate", torch.zeros(1)).sum()),
        "err_sum": float(comps["reward_errors"].sum()),
        "gen_tokens": float(sum(len(g.token_ids) for g in gens)),
        "train_tokens": float(rollout.mask.numel() * ppo_epochs),  # forward+backward passes over the batch
        "groups": float(len(group_stats.mean)), "group_std_sum": float(group_stats.std.sum()),
        "constant_groups": float(group_stats.constant.float().sum()),
    }
    if dist.is_initialized() and dist.get_world_size(dp_group) > 1:
        parts = [None] * dist.get_world_size(dp_group)
        dist.all_gather_object(parts, local, group=dp_group)
        local = {k: (max if k == "len_max" else sum)(p[k] for p in parts) for k in local}
    n = local["n"]
    mean = local["reward_sum"] / n
    m = {
        "reward_mean": mean, "reward_std": max(local["reward_sq"] / n - mean**2, 0.0) ** 0.5,
        "accuracy": local["acc_sum"] / n, "format_rate": local["fmt_sum"] / n,
        "response_length_mean": local["len_sum"] / n, "response_length_max": local["len_max"],
        "truncated_fraction": local["trunc"] / n, "reward_errors": local["err_sum"],
        "rollout_tokens_per_s": local["gen_tokens"] / max(timings["time_rollout"], 1e-9),
        "train_tokens_per_s": float(rollout.mask.numel()) / max(timings["time_train"], 1e-9),
        # (padded) tokens all ranks trained on, x PPO epochs, over this rank's training time, per GPU
        "train_tokens_per_s_per_gpu": local["train_tokens"] / max(timings["time_train"], 1e-9)
        / (dist.get_world_size() if dist.is_initialized() else 1),
    }
    m.update({"reward_group_std_mean": local["group_std_sum"] / local["groups"],
              "reward_constant_group_frac": local["constant_groups"] / local["groups"]})
    m.update({k.replace("/", "_"): v for k, v in train_metrics.items()})
    m.update({k.replace("/", "_"): v for k, v in mismatch.items()})
    aliases = {"kl_ref": "actor/ref_kl", "entropy": "actor/entropy"}
    m.update({new: train_metrics[old] for new, old in aliases.items() if old in train_metrics})
    if "actor/clip_frac_low" in train_metrics:
        m["clip_fraction"] = train_metrics["actor/clip_frac_low"] + train_metrics["actor/clip_frac_high"]
    m.update(timings)
    return m
