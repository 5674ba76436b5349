"""DAPO dynamic sampling: keep only groups that carry a learning signal.

A group whose G rewards are all equal (all correct or all wrong) has advantage exactly 0 for
every response, hence contributes no policy gradient, yet it still takes its share of the
loss denominator and of the batch. As training progresses more prompts become "solved", the
effective batch shrinks and gradients get noisier. DAPO therefore *filters* such groups and
keeps generating (over-sampling new prompts) until the batch holds ``target_groups`` groups
with non-constant rewards, then truncates to exactly that many.

:class:`GroupAccumulator` implements the bookkeeping across generation rounds; it is
agnostic of what a "sample" is: besides the rewards it carries any per-sample fields
(tensors or lists with the sample on the leading axis), grouped contiguously G per prompt.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import torch

from r1mega.rl.advantages import constant_groups, group_rewards


def informative_groups(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """``[num_prompts]`` bool: True for groups whose rewards are not all equal (kept)."""
    return ~constant_groups(group_rewards(rewards, group_size))


def _take(value: Any, sample_index: torch.Tensor) -> Any:
    if isinstance(value, torch.Tensor):
        return value.index_select(0, sample_index.to(value.device))
    return [value[i] for i in sample_index.tolist()]


def _concat(parts: list) -> Any:
    if isinstance(parts[0], torch.Tensor):
        return torch.cat(parts, dim=0)
    return [item for part in parts for item in part]


class GroupAccumulator:
    """Collects informative groups over generation rounds until ``target_groups`` are held.

    Usage::

        acc = GroupAccumulator(target_groups=P, group_size=G, max_rounds=cfg.max_dynamic_sampling_rounds)
        while not acc.is_full:
            acc.check_can_continue()          # RuntimeError after max_rounds
            batch = generate_and_score(next_prompts())
            acc.add(batch["rewards"], batch)  # keeps only the informative groups
        rewards, fields = acc.result()        # exactly P groups, in arrival order
    """

    def __init__(self, target_groups: int, group_size: int, max_rounds: int):
        if target_groups < 1 or group_size < 2 or max_rounds < 1:
            raise ValueError(
                "need target_groups >= 1, group_size >= 2, max_rounds >= 1; got "
                f"{target_groups}, {group_size}, {max_rounds}"
            )
        self.target_groups = target_groups
        self.group_size = group_size
        self.max_rounds = max_rounds
        self.rounds = 0
        self.groups_seen = 0
        self.groups_kept = 0
        self._rewards: list[torch.Tensor] = []
        self._fields: dict[str, list] = {}

    @property
    def is_full(self) -> bool:
        return self.groups_kept >= self.target_groups

    def check_can_continue(self) -> None:
        """Raise RuntimeError if another generation round would exceed ``max_rounds``."""
        if self.rounds >= self.max_rounds:
            raise RuntimeError(
                f"dynamic sampling kept {self.groups_kept}/{self.target_groups} groups after "
                f"{self.rounds} rounds (rl.max_dynamic_sampling_rounds); the prompts are too easy or "
                "too hard for the current policy"
            )

    def add(self, rewards: torch.Tensor, fields: Optional[Mapping[str, Any]] = None) -> int:
        """Add one round's samples; keep the informative groups. Returns how many were kept.

        ``fields`` maps names to per-sample tensors/lists of length ``len(rewards)``; a
        ``"rewards"`` entry, if present, is carried like any other field.
        """
        fields = dict(fields or {})
        for name, value in fields.items():
            if len(value) != rewards.numel():
                raise ValueError(f"field {name!r} has {len(value)} samples, rewards have {rewards.numel()}")
        if self._fields and set(fields) != set(self._fields):
            raise ValueError(f"fields changed between rounds: {sorted(self._fields)} -> {sorted(fields)}")
        keep = informative_groups(rewards, self.group_size)
        sample_index = self._sample_index(keep)
        self._rewards.append(rewards.index_select(0, sample_index))
        for name, value in fields.items():
            self._fields.setdefault(name, []).append(_take(value, sample_index))
        self.rounds += 1
        self.groups_seen += keep.numel()
        self.groups_kept += int(keep.sum())
        return int(keep.sum())

    def _sample_index(self, keep_groups: torch.Tensor) -> torch.Tensor:
        groups = keep_groups.nonzero().squeeze(1)
        offsets = torch.arange(self.group_size, device=groups.device)
        return (groups[:, None] * self.group_size + offsets[None, :]).reshape(-1)

    def result(self, allow_partial: bool = False) -> tuple[torch.Tensor, dict[str, Any]]:
        """The first ``target_groups`` kept groups: (rewards, fields), samples grouped contiguously.

        RuntimeError if not full, unless ``allow_partial`` (then everything kept is returned).
        """
        if not self.is_full and not allow_partial:
            raise RuntimeError(f"only {self.groups_kept}/{self.target_groups} groups collected")
        n = min(self.groups_kept, self.target_groups) * self.group_size
        rewards = torch.cat(self._rewards)[:n]
        fields = {name: _concat(parts)[:n] for name, parts in self._fields.items()}
        return rewards, fields

    def metrics(self) -> dict[str, float]:
        """Rounds used and the fraction of generated groups that were informative."""
        return {
            "dynamic_sampling/rounds": float(self.rounds),
            "dynamic_sampling/kept_frac": self.groups_kept / max(self.groups_seen, 1),
        }
