"""Rank-side half of the multi-rank distribute test (module-level so spawn can pickle it)."""

from __future__ import annotations

from r1mega.rollout.base import Generation


def fake_run(prompts, keys):
    """A deterministic 'generation' that depends only on the prompt and its seed key."""
    return [Generation(p, [sum(p) + 1000 * d + i], [-0.5], "stop") for p, (d, i) in zip(prompts, keys)]


def distribute_rank(leaders: list, dp_of: list) -> list:
    import os

    import torch.distributed as dist

    from r1mega.rollout.vllm_placement import Placement, distribute

    dist.init_process_group("gloo")
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])

    dp = dp_of[rank]
    prompts = [[dp, j, j] for j in range(3 + dp)]  # replicas hold different numbers of prompts
    placement = Placement(rank, world, leaders, [rank])
    out = [(g.prompt_ids, g.token_ids) for g in distribute(placement, dp, prompts, fake_run)]
    dist.destroy_process_group()
    return out
