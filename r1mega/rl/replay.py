"""Record GRPO rollout batches to disk and replay them, so runs at different layouts train on
exactly the same data.

Why. Sampling is a discontinuous function of the logits: two layouts that compute the same
logits up to rounding (bf16 GEMMs reduce in a different order at TP=2 than at TP=1) draw
different tokens as soon as one sampled token sits near a CDF boundary, and from there the
rollouts, rewards and losses of the two runs have nothing in common. Comparing layouts is only
meaningful on identical rollouts. ``rl.record_dir=DIR`` writes every step's rollout batch;
``rl.replay_dir=DIR`` reads it back instead of generating and scoring, so every layout
sees the same prompts, responses, rollout log-probs and rewards, and any difference left in
the losses comes from the training computation alone.

File format: one JSON file per RL step, ``DIR/step_000001.json``, holding the *global* batch
(all data-parallel ranks) in the sampler's order, so a replay at another DP size slices it
the way that run's sampler would::

    step, group_size, sample_ids         dataset indices of the step's prompts (global order)
    prompt_ids                           token ids per prompt
    responses                            per response (G per prompt, in prompt order):
                                         token_ids, logprobs, finish_reason, text
    rewards, components                  raw rule rewards per response (before overlong
                                         shaping, which the replaying run re-applies from its
                                         config) and the reward components that are logged

JSON keeps float log-probs exactly (Python writes the shortest repr that round-trips).
Global rank 0 writes each file atomically (temporary file + rename), so an interrupted run
leaves whole step files only; a resumed recording run rewrites the steps it repeats.
Initial weights. Megatron initialises each rank's shard from its own RNG stream, so the same
seed gives different weights at different layouts. The recording run therefore also saves
its initial weights as a model-only checkpoint in ``DIR/init``; replaying runs start from
them with ``trainer.init_from=DIR/init`` (any layout: the checkpoint is resharded on load).

A replay refuses a missing step file and a batch that does not fit the run (other prompts,
group size, prompt tokens or longer responses than ``rollout.max_tokens``), naming the file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.distributed as dist

from r1mega.data.sampler import rank_slice
from r1mega.rollout.base import Generation


def init_dir(directory: str | Path) -> Path:
    """Where a recording run saves its initial weights (a model-only checkpoint)."""
    return Path(directory) / "init"


def step_file(directory: str | Path, step: int) -> Path:
    return Path(directory) / f"step_{step:06d}.json"


def _gather(obj, group) -> list:
    """[obj of DP rank 0, obj of DP rank 1, ...] on every rank of ``group``."""
    if not dist.is_initialized() or dist.get_world_size(group) == 1:
        return [obj]
    parts = [None] * dist.get_world_size(group)
    dist.all_gather_object(parts, obj, group=group)
    return parts


def record_step(directory: str | Path, step: int, sample_ids: list[int], prompts: list[list[int]],
                gens: list[Generation], rewards: torch.Tensor, components: dict, group_size: int,
                dp_group=None) -> None:
    """Write this step's global rollout batch (collective over the DP group; rank 0 writes)."""
    local = {
        "prompt_ids": [list(p) for p in prompts],
        "responses": [{"token_ids": list(g.token_ids), "logprobs": [float(x) for x in g.logprobs],
                       "finish_reason": g.finish_reason, "text": g.text} for g in gens],
        "rewards": [float(r) for r in rewards.tolist()],
        "components": {k: [float(x) for x in v.tolist()] for k, v in components.items()},
    }
    parts = _gather(local, dp_group)
    if dist.is_initialized() and dist.get_rank() != 0:
        return
    merged = {"step": step, "group_size": group_size, "sample_ids": list(sample_ids),
              "prompt_ids": [], "responses": [], "rewards": [],
              "components": {k: [] for k in local["components"]}}
    for part in parts:
        for key in ("prompt_ids", "responses", "rewards"):
            merged[key] += part[key]
        for k in merged["components"]:
            merged["components"][k] += part["components"][k]
    path = step_file(directory, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(merged))
    os.replace(tmp, path)


def replay_step(directory: str | Path, step: int, sample_ids: list[int], prompts: list[list[int]],
                group_size: int, max_tokens: int, dp_rank: int, dp: int
                ) -> tuple[list[Generation], torch.Tensor, dict]:
    """This DP rank's generations, raw rewards and reward components for ``step``.

    ``sample_ids`` is the run's global batch of dataset indices for the step and ``prompts``
    this rank's encoded prompts (its ``rank_slice``); both must match the recording."""
    path = step_file(directory, step)
    if not path.is_file():
        raise ValueError(f"rl.replay_dir={str(directory)!r} has no {path.name} for RL step {step} "
                         f"(record with rl.record_dir and at least as many trainer.max_steps)")
    try:
        rec = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a readable rollout record ({e})") from e
    n_prompts = len(rec["sample_ids"])
    if rec["group_size"] != group_size:
        raise ValueError(f"{path}: recorded with group_size={rec['group_size']}, this run has rl.group_size={group_size}")
    if rec["sample_ids"] != list(sample_ids):
        raise ValueError(f"{path}: recorded for dataset rows {rec['sample_ids'][:8]}..., this run draws "
                         f"{list(sample_ids)[:8]}... (replay needs the same data, trainer.seed and "
                         f"trainer.global_batch_size: {n_prompts * group_size} responses recorded)")
    if len(rec["responses"]) != n_prompts * group_size or len(rec["rewards"]) != len(rec["responses"]):
        raise ValueError(f"{path}: {len(rec['responses'])} responses and {len(rec['rewards'])} rewards "
                         f"for {n_prompts} prompts x group_size {group_size}")
    positions = rank_slice(list(range(n_prompts)), dp_rank, dp)
    for pos, ids in zip(positions, prompts):
        if rec["prompt_ids"][pos] != list(ids):
            raise ValueError(f"{path}: prompt {pos} (dataset row {rec['sample_ids'][pos]}) was tokenized "
                             "differently when recorded (tokenizer or data.template changed)")
    rows = [pos * group_size + j for pos in positions for j in range(group_size)]
    gens = []
    for r in rows:
        resp = rec["responses"][r]
        if len(resp["token_ids"]) > max_tokens:
            raise ValueError(f"{path}: response {r} has {len(resp['token_ids'])} tokens, more than "
                             f"rollout.max_tokens={max_tokens}")
        gens.append(Generation(rec["prompt_ids"][r // group_size], resp["token_ids"], resp["logprobs"],
                               resp["finish_reason"], resp.get("text", "")))
    rewards = torch.tensor([rec["rewards"][r] for r in rows], dtype=torch.float32)
    comps = {k: torch.tensor([v[r] for r in rows]) for k, v in rec["components"].items()}
    return gens, rewards, comps
