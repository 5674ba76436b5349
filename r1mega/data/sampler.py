"""Deterministic, resumable order over a dataset, split over data-parallel ranks.

The order of epoch ``e`` is a permutation drawn from ``seed + e``; a position is just
``(epoch, index)``. Saving those two numbers in a checkpoint and restoring them reproduces the
exact batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import torch


class EpochSampler:
    """Yields global batches of dataset indices; each DP rank then takes its own slice."""

    def __init__(self, size: int, global_batch: int, seed: int, shuffle: bool = True):
        if size < global_batch:
            raise ValueError(f"dataset has {size} samples, fewer than one global batch ({global_batch})")
        self.size, self.global_batch, self.seed, self.shuffle = size, global_batch, seed, shuffle
        self.epoch, self.index = 0, 0
        self._order = self._permutation(0)

    def _permutation(self, epoch: int) -> list:
        if not self.shuffle:
            return list(range(self.size))
        g = torch.Generator().manual_seed(self.seed + epoch)
        return torch.randperm(self.size, generator=g).tolist()

    def next_batch(self) -> list:
        """The next ``global_batch`` indices (an epoch's tail shorter than a batch is dropped)."""
        if self.index + self.global_batch > self.size:
            self.epoch += 1
            self.index = 0
            self._order = self._permutation(self.epoch)
        batch = self._order[self.index : self.index + self.global_batch]
        self.index += self.global_batch
        return batch

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "index": self.index, "seed": self.seed, "size": self.size}

    def load_state_dict(self, state: dict) -> None:
        if state.get("size") != self.size:
            raise ValueError(
                f"checkpoint data position was saved for a dataset of {state.get('size')} samples, "
                f"this run has {self.size}; change data back or start with trainer.resume=false"
            )
        self.epoch, self.index = state["epoch"], state["index"]
        self._order = self._permutation(self.epoch)


def rank_slice(batch: list, dp_rank: int, dp_size: int) -> list:
    """This DP rank's contiguous share of a global batch."""
    per = len(batch) // dp_size
    return batch[dp_rank * per : (dp_rank + 1) * per]
