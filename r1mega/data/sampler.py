"""Deterministic, resumable order over a dataset, split over data-parallel ranks.

The order of epoch ``e`` is a permutation drawn from ``seed + e``; a position is just
``(epoch, index)``. Saving those two numbers in a checkpoint and restoring them reproduces the
exact batches an uninterrupted run would have seen.

With ``lengths`` (the SFT stage's ``data.group_by_length``) each global batch is drawn from
samples of similar length, as Hugging Face Trainer's ``group_by_length`` does: the epoch's
permutation is cut into mega-batches of ``MEGABATCH`` global batches, each mega-batch is sorted
by length and cut into global batches, and the order of those batches is shuffled. Padding
then follows the batch, not the dataset: on the tiny pipeline's cold-start data (half one-line
answers of 31 tokens, half worked solutions of ~100) a batch pads to 32 or to 112 tokens
instead of always 112. Every sample is still seen once per epoch, and the order is still a
function of ``(seed, epoch)``, so resuming is exact.
"""

from __future__ import annotations

import torch


MEGABATCH = 50
"""Global batches per length-sorted mega-batch (Hugging Face Trainer uses 50 as well)."""


class EpochSampler:
    """Yields global batches of dataset indices; each DP rank then takes its own slice."""

    def __init__(self, size: int, global_batch: int, seed: int, shuffle: bool = True,
                 lengths: list | None = None):
        if size < global_batch:
            raise ValueError(f"dataset has {size} samples, fewer than one global batch ({global_batch})")
        assert lengths is None or len(lengths) == size
        self.size, self.global_batch, self.seed, self.shuffle = size, global_batch, seed, shuffle
        self.lengths = lengths
        self.epoch, self.index = 0, 0
        self._order = self._permutation(0)

    def _permutation(self, epoch: int) -> list:
        if not self.shuffle:
            return list(range(self.size))
        g = torch.Generator().manual_seed(self.seed + epoch)
        order = torch.randperm(self.size, generator=g).tolist()
        return self._by_length(order, g) if self.lengths is not None else order

    def _by_length(self, order: list, g: torch.Generator) -> list:
        """``order`` regrouped into global batches of similar length, in shuffled batch order;
        the one short batch an epoch can end with stays last (``next_batch`` drops it)."""
        gb = self.global_batch
        span = gb * MEGABATCH
        batches = []
        for start in range(0, len(order), span):
            mega = sorted(order[start : start + span], key=lambda i: -self.lengths[i])
            batches += [mega[j : j + gb] for j in range(0, len(mega), gb)]
        tail = batches.pop() if len(batches[-1]) < gb else []
        shuffled = [batches[k] for k in torch.randperm(len(batches), generator=g).tolist()]
        return [i for b in shuffled for i in b] + tail

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
