"""Where vLLM instances live and how one rollout batch is shared among them.

Colocated (``rollout.vllm.colocate=true``): trainer ranks are cut into *rollout groups* of
``rollout.vllm.tp`` consecutive ranks on one host; the first rank of each group (its
*leader*) owns one vLLM instance whose TP workers run on exactly the group's GPUs. vLLM's TP
is therefore independent of the trainer's TP/PP/EP: only ``world % rollout.vllm.tp == 0`` is needed.

Separate (``rollout.vllm.colocate=false``): trainer rank 0 owns the only instance, on
``rollout.vllm.gpus`` (by default the ``rollout.vllm.tp`` GPUs after the trainer's local ones).

Sharing a batch (:func:`distribute`): ranks of one data-parallel replica hold the same
prompts (TP/PP/CP peers), so prompts are de-duplicated by data-parallel rank, the unique
list is split evenly over the leaders, and the generations are all-gathered back: every rank
receives exactly its replica's responses, whichever leader produced them. Per-request seeds
depend on (data-parallel rank, position) only, so the output does not depend on the split.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from typing import Callable

import torch.distributed as dist


@dataclass
class Placement:
    rank: int = 0
    world: int = 1
    leaders: list = field(default_factory=lambda: [0])
    """Global ranks that own a vLLM instance."""
    group_ranks: list = field(default_factory=lambda: [0])
    """This rank's rollout group (colocated) or [0] (separate)."""
    devices: list = field(default_factory=list)
    """Leader only: physical GPU ids (CUDA_VISIBLE_DEVICES entries) for its vLLM workers."""
    group: object = None
    """torch.distributed group of ``group_ranks`` (None when it has one rank)."""

    @property
    def is_leader(self) -> bool:
        return self.rank in self.leaders


def _physical_gpu(local_index: int) -> str:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible:
        return visible.split(",")[local_index].strip()
    return str(local_index)


def plan_placement(tp: int, colocate: bool, vllm_gpus: list, local_device: int, num_devices: int) -> Placement:
    """Every rank calls this collectively (it gathers hosts and GPUs)."""
    rank = dist.get_rank() if dist.is_initialized() else 0
    world = dist.get_world_size() if dist.is_initialized() else 1
    me = (socket.gethostname(), _physical_gpu(local_device))
    everyone = [me]
    if world > 1:
        everyone = [None] * world
        dist.all_gather_object(everyone, me)
    if not colocate:
        return _separate(rank, world, tp, everyone, vllm_gpus, num_devices)
    placement = _colocated(rank, world, tp, everyone)
    if world > 1 and tp > 1:
        for leader in placement.leaders:  # every rank creates every group (torch.distributed requires it)
            group = dist.new_group(list(range(leader, leader + tp)))
            if leader == placement.group_ranks[0]:
                placement.group = group
    return placement


def _colocated(rank: int, world: int, tp: int, everyone: list) -> Placement:
    if world % tp:
        raise ValueError(f"rollout.vllm.tp={tp} must divide the number of trainer ranks ({world}) "
                         "when rollout.vllm.colocate=true")
    groups = [list(range(s, s + tp)) for s in range(0, world, tp)]
    for g in groups:
        hosts = {everyone[r][0] for r in g}
        if len(hosts) > 1:
            raise ValueError(f"rollout.vllm.tp={tp}: trainer ranks {g} span hosts {sorted(hosts)}; a vLLM "
                             "instance must sit on one host (use a rollout.vllm.tp that divides the GPUs per node)")
    mine = groups[rank // tp]
    return Placement(rank, world, [g[0] for g in groups], mine, [everyone[r][1] for r in mine])


def _separate(rank: int, world: int, tp: int, everyone: list, vllm_gpus: list, num_devices: int) -> Placement:
    local_trainer = sum(1 for host, _ in everyone if host == everyone[0][0])
    if vllm_gpus:
        devices = [str(g) for g in vllm_gpus]
    else:
        if local_trainer + tp > num_devices:
            raise ValueError(f"rollout.vllm.colocate=false needs {tp} free GPUs for vLLM after the trainer's "
                             f"{local_trainer} on this node, but only {num_devices} are visible; set "
                             "rollout.vllm.gpus or use rollout.vllm.colocate=true")
        devices = [_physical_gpu(i) for i in range(local_trainer, local_trainer + tp)]
    trainer_gpus = {gpu for host, gpu in everyone if host == everyone[0][0]}
    if trainer_gpus & set(devices):
        raise ValueError(f"rollout.vllm.gpus={devices} overlaps the trainer's GPUs {sorted(trainer_gpus)} "
                         "with rollout.vllm.colocate=false")
    return Placement(rank, world, [0], [0], devices if rank == 0 else [], None)


def distribute(placement: Placement, dp_rank: int, prompts: list, run: Callable[[list, list], list]) -> list:
    """Generations for this rank's ``prompts`` (see the module docstring).

    ``run(prompts, keys)`` generates on a leader; ``keys[i] = (dp_rank, index)`` seeds request i.
    """
    if placement.world == 1:
        return run(prompts, [(dp_rank, i) for i in range(len(prompts))])
    gathered: list = [None] * placement.world
    dist.all_gather_object(gathered, (dp_rank, prompts))
    replicas: dict = {}
    for d, p in gathered:
        replicas.setdefault(d, p)
    work = [(d, i, p) for d in sorted(replicas) for i, p in enumerate(replicas[d])]
    n = len(placement.leaders)
    bounds = [len(work) * k // n for k in range(n + 1)]
    mine = None
    if placement.is_leader:
        k = placement.leaders.index(placement.rank)
        share = work[bounds[k]:bounds[k + 1]]
        mine = run([p for _, _, p in share], [(d, i) for d, i, _ in share])
    results: list = [None] * placement.world
    dist.all_gather_object(results, mine)
    flat = [g for leader in placement.leaders for g in results[leader]]
    return [g for (d, _, _), g in zip(work, flat) if d == dp_rank]
