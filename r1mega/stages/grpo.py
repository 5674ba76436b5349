"""Stages ``r1_zero`` and ``reasoning_rl``: GRPO on Megatron-Core.

One RL step, top to bottom (the pieces live in :mod:`r1mega.rl`):

1. rollout   - this DP rank's prompts, G responses each, scored (``rl/sources.py``: the engine,
               a replay of recorded batches, optionally recorded);
2. shaping   - overlong reward penalty or mask (``rl/shaping.py``);
3. log-probs - old policy (when updates are off-policy or a correction needs it) and the frozen
               reference (when ``rl.kl_beta > 0``), through Megatron's schedules
               (``rl/logprob_pass.py``), then the rollout/trainer mismatch correction and KL in
               the reward (``rl/shaping.py``);
4. advantage - group-relative ((r - mean) / std, or the configured estimator);
5. update    - ``rl.ppo_epochs`` x ``rl.num_minibatches`` optimizer steps, each normalised by
               the global token/sequence count of its mini-batch (``rl/update.py``);
6. sync      - push the new weights into the rollout engine;
7. log, evaluate, save (``stages/lifecycle.py``).

``trainer.global_batch_size`` is the rollout batch in *responses* (prompts x G) over all DP
ranks; ``trainer.max_steps`` counts RL steps. Held-out pass@1 is measured before, every
``trainer.eval_interval`` steps, and after, and lands in ``summary.json``.
"""

from __future__ import annotations

import dataclasses

from r1mega.config.schema import R1Config
from r1mega.data.loaders import load_split
from r1mega.parallel.dims import ParallelDims
from r1mega.rl import packing, shaping
from r1mega.rl.advantages import compute_advantages
from r1mega.rl.logprob_pass import Reference, fill_logprobs
from r1mega.rl.metrics import phase, step_metrics
from r1mega.rl.sources import build_source
from r1mega.rl.update import update
from r1mega.stages.lifecycle import StageRun
from r1mega.training import checkpoint as ckpt
from r1mega.training.setup import build_train_model

CURVES = ["reward_mean", "accuracy", "response_length_mean", "kl_ref", "entropy"]


def run(cfg: R1Config, dims: ParallelDims, make_rewarder=None, train_records=None) -> dict:
    """make_rewarder(cfg) -> object with score_batch/close (default RewardManager(cfg.reward));
    train_records replaces the train split (stage all_scenario_rl passes both)."""
    from megatron.core import parallel_state as ps

    rl, temperature = cfg.rl, cfg.rollout.temperature
    stage = StageRun(cfg, dims)
    vocab = len(stage.tokenizer)
    train = train_records if train_records is not None else load_split(cfg.data, "train", need_response=False)[0]
    test, _ = load_split(cfg.data, "test", need_response=False)
    tm, reference, engine, rewarder = _build(cfg, dims, stage, make_rewarder)
    layout, dp_group = packing.layout_for(cfg, dims, stage.tokenizer.pad_token_id, tm, reference), ps.get_data_parallel_group()
    source = build_source(cfg, train, stage.tokenizer, engine, rewarder, dims)
    meta = stage.resume(tm)
    if meta is not None:
        source.load_state_dict(meta)
    engine.update_weights()
    if cfg.rl.record_dir and stage.start_step == 0:  # replays start from these weights (r1mega.rl.replay)
        from r1mega.rl import replay

        ckpt.save_model_weights(replay.init_dir(cfg.rl.record_dir), tm)
    before = stage.evaluate("before", engine, rewarder, test) if stage.start_step == 0 else None
    for step in stage.steps():
        batch = source.next(step)
        timings = dict(batch.timings)
        shaping.shape_rewards(batch, rl, cfg.rollout.max_tokens)
        with phase(timings, "time_logprobs"):
            fill_logprobs(batch, tm, reference, rl, temperature, vocab, layout)
            mismatch = shaping.correct_mismatch(batch, rl, dp_group)
        shaping.kl_in_reward(batch, rl, dp_group)
        batch.advantages, groups = compute_advantages(batch.rewards, rl.group_size, rl.adv_estimator, rl.adv_eps)
        with phase(timings, "time_train"):
            trained = update(tm, batch, rl, temperature, vocab, layout, cfg.trainer.seed)
        with phase(timings, "time_sync"):
            source.sync_weights()
        stage.log(step, step_metrics(step, batch, groups, trained, mismatch, timings, rl.ppo_epochs))
        if stage.should_eval(step):
            stage.log(step, {f"eval_{k}": v for k, v in stage.evaluate(f"step{step}", engine, rewarder, test).items()})
        if stage.should_save(step):
            stage.save(step, tm, source.state_dict())
    after = stage.evaluate("after", engine, rewarder, test)
    gain = {"pass@1_gain": after["pass@1"] - before["pass@1"]} if before is not None else {}
    return stage.finish(gain, CURVES, close=rewarder.close)


def _build(cfg: R1Config, dims: ParallelDims, stage: StageRun, make_rewarder=None):
    """The policy (model, optimizer, schedule), the frozen reference, the rollout engine and
    the rewarder, in the order that keeps every rank's RNG streams as they were."""
    from megatron.core import parallel_state as ps

    from r1mega.rewards import RewardManager
    from r1mega.rollout.factory import build_engine

    optim = dataclasses.replace(cfg.optim, decay_steps=cfg.optim.decay_steps or cfg.trainer.max_steps * cfg.rl.updates)
    tm = build_train_model(cfg.model, dims, optim, cfg.trainer, cfg.parallel.distributed_optimizer)
    init = ckpt.policy_checkpoint(cfg.trainer.init_from) if cfg.trainer.init_from else None
    reference = Reference(cfg, dims, tm, init) if cfg.rl.needs_reference else None
    engine = build_engine(cfg, stage.tokenizer, dims, tm=tm, seed_offset=ps.get_data_parallel_rank() * 7919)
    rewarder = make_rewarder(cfg) if make_rewarder is not None else RewardManager(cfg.reward)
    return tm, reference, engine, rewarder
