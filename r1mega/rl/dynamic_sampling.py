"""DAPO dynamic sampling: train only on groups that carry a learning signal.

A group whose G rewards are all equal (all correct or all wrong) has advantage exactly 0 for
every response, hence contributes no policy gradient, yet it takes its share of the batch. As
training goes on more prompts become "solved", the useful batch shrinks and gradients get
noisier. DAPO therefore drops such groups and keeps drawing new prompts until the batch holds
as many informative groups as a normal step has prompts.

:class:`DynamicSamplingSource` wraps an :class:`~r1mega.rl.sources.EngineSource`. Each
*round* every data-parallel rank draws its share of one step's prompts (the sampler advances,
so resume stays exact), generates and scores; the groups of all ranks are gathered in rank
order and sorted into kept (informative) and dropped. Rounds continue until enough groups are
kept or ``rl.max_dynamic_sampling_rounds`` rounds ran. Then the first ``prompts_per_step``
kept groups are dealt out to the ranks in contiguous slices. If the rounds ran out first,
``rl.dynamic_sampling_exhausted`` decides:

* ``keep``: train on the kept groups only, rounded down to a whole number of micro-batches per
  rank and mini-batch (if none is left, dropped groups fill one such unit);
* ``pad``: fill the batch up with dropped groups (zero advantage), as veRL does.

Per step it reports ``dynamic_sampling_groups_generated``, ``dynamic_sampling_kept_frac`` (kept
over generated), ``dynamic_sampling_rounds`` and ``dynamic_sampling_padded_groups``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist

from r1mega.data.sampler import rank_slice
from r1mega.rl.advantages import constant_groups, group_rewards
from r1mega.rl.batch import RolloutBatch
from r1mega.rl.sources import Wrapper
from r1mega.rollout.base import Generation


def informative_groups(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """``[num_prompts]`` bool: True for groups whose rewards are not all equal (kept)."""
    return ~constant_groups(group_rewards(rewards, group_size))


@dataclass
class Group:
    """One prompt's G scored responses."""

    prompt: list
    generations: list[Generation]
    rewards: torch.Tensor
    components: dict


def split_groups(prompts: list, gens: list[Generation], rewards: torch.Tensor, comps: dict,
                 group_size: int) -> list[Group]:
    return [Group(prompts[i], gens[i * group_size:(i + 1) * group_size],
                  rewards[i * group_size:(i + 1) * group_size],
                  {k: v[i * group_size:(i + 1) * group_size] for k, v in comps.items()})
            for i in range(len(prompts))]


def choose(kept: list[Group], dropped: list[Group], need: int, unit: int, exhausted: str) -> tuple[list[Group], int]:
    """The step's groups (global order) and how many of them are dropped ones used as filler.
    ``unit``: the smallest group count that splits into whole micro-batches on every rank."""
    if len(kept) >= need:
        return kept[:need], 0
    if exhausted == "keep":
        n = len(kept) // unit * unit
        if n:
            return kept[:n], 0
        need = unit
    filler = dropped[: need - len(kept)]
    if len(kept) + len(filler) < need:
        raise ValueError(f"dynamic sampling generated {len(kept) + len(dropped)} groups in all, fewer than the "
                         f"{need} the step needs")
    return kept + filler, len(filler)


def unit_groups(group_size: int, micro_batch_size: int, num_minibatches: int, dp: int) -> int:
    """Smallest global group count whose per-rank responses fill whole micro-batches in every
    mini-batch."""
    per_rank_responses = math.lcm(group_size, micro_batch_size * num_minibatches)
    return dp * per_rank_responses // group_size


def _gather(groups: list[Group], group) -> list[Group]:
    if not dist.is_initialized() or dist.get_world_size(group) == 1:
        return groups
    parts = [None] * dist.get_world_size(group)
    dist.all_gather_object(parts, groups, group=group)
    return [g for part in parts for g in part]


class DynamicSamplingSource(Wrapper):
    """``inner``'s prompts, engine and rewarder, with the DAPO filter (see module doc)."""

    def __init__(self, inner, max_rounds: int, exhausted: str, unit: int, dp_group):
        super().__init__(inner)
        self.max_rounds, self.exhausted, self.unit = max_rounds, exhausted, unit
        self.dp_group = dp_group

    def next(self, step: int, version: int | None = None) -> RolloutBatch:
        from r1mega.rl.sources import Rollouts, score

        src, G = self.inner, self.inner.group_size
        need = src.sampler.global_batch
        kept, dropped, rounds, t_gen, t_score = [], [], 0, 0.0, 0.0
        while len(kept) < need and rounds < self.max_rounds:
            t = time.perf_counter()
            _, records, prompts = src.draw()
            gens = src.engine.generate([p for p in prompts for _ in range(G)], src.sampling)
            t_gen, t = t_gen + time.perf_counter() - t, time.perf_counter()
            rewards, comps = score(src.rewarder, gens, records, G)
            t_score += time.perf_counter() - t
            for g in _gather(split_groups(prompts, gens, rewards, comps, G), self.dp_group):
                (dropped if bool(constant_groups(g.rewards[None])[0]) else kept).append(g)
            rounds += 1
        generated = len(kept) + len(dropped)
        chosen, padded = choose(kept, dropped, need, self.unit, self.exhausted)
        mine = rank_slice(chosen, src.dp_rank, src.dp)
        shared = set.intersection(*(set(g.components) for g in mine))  # e.g. format_rate only where every round had it
        batch = src.assemble(Rollouts([], [g.prompt for g in mine], [x for g in mine for x in g.generations],
                                      torch.cat([g.rewards for g in mine]),
                                      {k: torch.cat([g.components[k] for g in mine]) for k in sorted(shared)},
                                      {"time_rollout": t_gen, "time_reward": t_score}),
                             step if version is None else version)
        batch.source_metrics = {"dynamic_sampling_groups_generated": float(generated),
                                "dynamic_sampling_kept_frac": len(kept) / generated,
                                "dynamic_sampling_rounds": float(rounds),
                                "dynamic_sampling_padded_groups": float(padded)}
        return batch
