"""Where a GRPO step's rollout batch comes from: ``source.next(step) -> RolloutBatch``.

* :class:`EngineSource` draws the step's prompts from the training split, generates ``G``
  responses per prompt with the rollout engine and scores them with the rewarder;
* :class:`ReplaySource` reads the step's recorded batch instead (``rl.replay_dir``, see
  :mod:`r1mega.rl.replay`), checking it was recorded for the same prompts;
* :class:`RecordingSource` wraps another source and writes every batch it yields
  (``rl.record_dir``).

Every source walks the same :class:`~r1mega.data.sampler.EpochSampler`, whose position (and
the engine's sampling-RNG state) goes into checkpoints through :meth:`state_dict`, so a resumed
run draws exactly the prompts and samples the uninterrupted one would have.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional

import torch

from r1mega.data.sampler import EpochSampler, rank_slice
from r1mega.data.templates import encode_prompts
from r1mega.device import on_gpu
from r1mega.rl import replay
from r1mega.rl.batch import RolloutBatch, agreed_length
from r1mega.rl.packing import assign_rows
from r1mega.rollout.base import SamplingParams


def score(rewarder, gens, records, group_size: int) -> tuple[torch.Tensor, dict]:
    """Rewards ``[N]`` and the logged components (accuracy, format rate, reward errors)."""
    from r1mega.eval.runner import accuracy_of

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


@dataclass
class Rollouts:
    """One rank's scored responses of a step, before they become a :class:`RolloutBatch`."""

    sample_ids: list
    prompts: list
    generations: list
    rewards: torch.Tensor
    components: dict
    timings: dict


class EngineSource:
    """Prompts from ``records`` (``prompts_per_step`` per step over all DP ranks), responses
    from ``engine``, rewards from ``rewarder``."""

    def __init__(self, *, records: list[dict], sampler: EpochSampler, tokenizer, template: str, engine, rewarder,
                 sampling: SamplingParams, group_size: int, dp_rank: int, dp: int, dp_group, pad_multiple: int,
                 balance: bool):
        self.records, self.sampler, self.tokenizer, self.template = records, sampler, tokenizer, template
        self.engine, self.rewarder, self.sampling = engine, rewarder, sampling
        self.group_size, self.dp_rank, self.dp, self.dp_group = group_size, dp_rank, dp, dp_group
        self.pad_multiple, self.balance = pad_multiple, balance

    def draw(self) -> tuple[list[int], list[dict], list[list[int]]]:
        """The step's global sample ids, this rank's records and their encoded prompts."""
        sample_ids = self.sampler.next_batch()
        records = [self.records[i] for i in rank_slice(sample_ids, self.dp_rank, self.dp)]
        return sample_ids, records, encode_prompts(records, self.tokenizer, self.template)

    def next(self, step: int, version: Optional[int] = None) -> RolloutBatch:
        """The batch of RL step ``step``, generated now with the weights of step ``version``
        (default ``step``: on-policy)."""
        return self.assemble(self.produce(step), step if version is None else version)

    def produce(self, step: int) -> Rollouts:
        """This rank's share of the step: draw, generate, score. It communicates only inside the
        engine (vLLM placement gathers the prompts of trainer ranks that share an engine), so
        with a single trainer rank it may run on a background thread while the trainer works
        (see rl/off_policy.py)."""
        t = time.perf_counter()
        sample_ids, records, prompts = self.draw()
        gens = self.engine.generate([p for p in prompts for _ in range(self.group_size)], self.sampling)
        t_rollout, t = time.perf_counter() - t, time.perf_counter()
        rewards, comps = score(self.rewarder, gens, records, self.group_size)
        return Rollouts(sample_ids, prompts, gens, rewards, comps,
                        {"time_rollout": t_rollout, "time_reward": time.perf_counter() - t})

    def assemble(self, r: Rollouts, version: int) -> RolloutBatch:
        """This rank's rollouts as tensors, then the whole step's batch on every rank (a
        collective), with the rows this rank computes."""
        local = RolloutBatch.from_generations(
            r.generations, r.rewards, r.components, self.tokenizer.pad_token_id,
            agreed_length(r.generations, self.pad_multiple), sample_ids=r.sample_ids, prompts=r.prompts,
            timings=r.timings)
        local.versions = torch.full((len(local),), version, dtype=torch.long)
        return self.adopt(local.gathered(self.dp_group))

    def adopt(self, batch: RolloutBatch) -> RolloutBatch:
        """Give this rank its rows of a gathered batch (:func:`~r1mega.rl.packing.assign_rows`)."""
        n = len(batch) // self.dp
        batch.owned = list(range(self.dp_rank * n, (self.dp_rank + 1) * n)) if self.dp > 1 else None
        assign_rows(batch, self.dp_rank, self.dp, self.balance)
        return batch

    def sync_weights(self) -> None:
        """The engine serves the trainer's current weights."""
        self.engine.update_weights()

    def state_dict(self) -> dict:
        """Data position and the engine's sampling state, for checkpoints."""
        return {"data": self.sampler.state_dict(), "engine": self.engine.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.sampler.load_state_dict(state["data"])
        # checkpoints written before the engine state was a dict kept only the call count
        self.engine.load_state_dict(state.get("engine") or {"calls": state.get("engine_calls", 0)})


class ReplaySource(EngineSource):
    """The recorded batch of each step from ``directory`` instead of generating and scoring."""

    def __init__(self, directory: str, max_tokens: int, **kw):  # kw: EngineSource's
        super().__init__(**kw)
        self.directory, self.max_tokens = directory, max_tokens

    def produce(self, step: int) -> Rollouts:
        t = time.perf_counter()
        sample_ids, _, prompts = self.draw()
        gens, rewards, comps = replay.replay_step(self.directory, step, sample_ids, prompts, self.group_size,
                                                  self.max_tokens, self.dp_rank, self.dp)
        return Rollouts(sample_ids, prompts, gens, rewards, comps,
                        {"time_rollout": time.perf_counter() - t, "time_reward": 0.0})


class Wrapper:
    """A source around another (``inner``): weight sync, row ownership and checkpoint state are
    the inner source's unless the wrapper says otherwise."""

    def __init__(self, inner):
        self.inner = inner

    def sync_weights(self) -> None:
        self.inner.sync_weights()

    def adopt(self, batch: RolloutBatch) -> RolloutBatch:
        return self.inner.adopt(batch)

    def state_dict(self) -> dict:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.inner.load_state_dict(state)


class RecordingSource(Wrapper):
    """``inner``'s batches, each also written to ``directory`` (collective over ``dp_group``)."""

    def __init__(self, inner, directory: str, group_size: int, dp_group):
        super().__init__(inner)
        self.directory, self.group_size, self.dp_group = directory, group_size, dp_group

    def next(self, step: int, version: Optional[int] = None) -> RolloutBatch:
        r = self.inner.produce(step)
        replay.record_step(self.directory, step, r.sample_ids, r.prompts, r.generations, r.rewards, r.components,
                           self.group_size, self.dp_group)
        return self.inner.assemble(r, step if version is None else version)



def build_source(cfg, records: list[dict], tokenizer, engine, rewarder, dims):
    """The source ``cfg`` asks for: the engine, or a replay, optionally recorded."""
    from megatron.core import parallel_state as ps

    rl = cfg.rl
    sampler = EpochSampler(len(records), cfg.trainer.global_batch_size // rl.group_size, cfg.trainer.seed,
                           cfg.data.shuffle)
    sampling = SamplingParams.from_config(cfg.rollout, cfg.trainer.seed)
    common = dict(records=records, sampler=sampler, tokenizer=tokenizer, template=cfg.data.template,
                  engine=engine, rewarder=rewarder, sampling=sampling, group_size=rl.group_size,
                  dp_rank=ps.get_data_parallel_rank(), dp=dims.dp, dp_group=ps.get_data_parallel_group(),
                  pad_multiple=dims.pad_multiple(on_gpu()),
                  balance=cfg.trainer.max_tokens_per_microbatch is not None)
    if rl.replay_dir:
        source = ReplaySource(rl.replay_dir, cfg.rollout.max_tokens, **common)
    else:
        source = EngineSource(**common)
    plain = not rl.dynamic_sampling and not rl.record_dir  # no collectives while it generates
    if rl.dynamic_sampling:
        from r1mega.rl.dynamic_sampling import DynamicSamplingSource, unit_groups

        unit = unit_groups(rl.group_size, cfg.trainer.micro_batch_size, rl.num_minibatches, dims.dp)
        source = DynamicSamplingSource(source, rl.max_dynamic_sampling_rounds, rl.dynamic_sampling_exhausted, unit,
                                       ps.get_data_parallel_group())
    if rl.record_dir:
        source = RecordingSource(source, rl.record_dir, rl.group_size, ps.get_data_parallel_group())
    if rl.off_policy_steps:
        from r1mega.rl.off_policy import OneStepAhead

        # On a thread only where generating needs no collective: vLLM on its own GPUs serving
        # one trainer rank (with several, the placement's prompt gathers would race the
        # trainer's collectives), and no dynamic sampling or recording.
        separate_vllm = cfg.rollout.engine == "vllm" and not cfg.rollout.vllm.colocate
        source = OneStepAhead(source, cfg.trainer.max_steps, concurrent=separate_vllm and plain and dims.world_size == 1)
    return source
