"""What one GRPO step logs: loss metrics merged exactly, and rollout / timing metrics.

Merging (:class:`LossMetrics`). Every micro-batch's loss function reports token means over its
own valid tokens (``actor/entropy``, ``actor/ratio_mean``, ...), maxima (``*_max``), its token
count (``actor/num_tokens``) and its share of the batch loss (``loss``). A step merges them over
micro-batches, data-parallel ranks and optimizer updates (``ppo_epochs x num_minibatches``):

* means are weighted by tokens (a mean of micro-batch means would over-weight short ones);
* ``*_max`` keys take the maximum;
* ``loss`` is summed within an update (the shares add up to the batch loss) and averaged over
  updates, as are the optimizer's per-update values (grad norm, lr, ...);
* ``*num_tokens`` is the tokens per update.

The result does not depend on how the batch is split into micro-batches or ranks.
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager

import torch
import torch.distributed as dist

from r1mega.device import cuda_device_or_none
from r1mega.rl.advantages import GroupStats
from r1mega.rl.batch import RolloutBatch

PER_UPDATE = ("grad_norm", "lr", "update_successful", "step_time")
"""Keys the optimizer step reports once per update (not per micro-batch)."""
WEIGHT = "actor/num_tokens"


def _is_sum(key: str) -> bool:
    return key == "loss" or key.endswith("num_tokens")


class LossMetrics:
    """Accumulates the loss metrics of a step's updates; :meth:`result` gives the merged dict."""

    def __init__(self, updates: int):
        self.updates = updates
        self.totals: dict[str, float] = {}
        self.maxima: dict[str, float] = {}
        self.weighted: dict[str, float] = {}
        self.weight = 0.0

    @staticmethod
    def partials(outputs: list[dict]) -> dict:
        """One rank's per-micro-batch dicts -> sums (token-weighted for means) and maxima.
        Used as ``train_step``'s ``collect``; runs on the last pipeline stage."""
        sums: dict[str, float] = {}
        maxima: dict[str, float] = {}
        for m in outputs:
            w = float(m[WEIGHT])
            for k, v in m.items():
                v = float(v)
                if k.endswith("_max"):
                    maxima[k] = max(maxima.get(k, -math.inf), v)
                elif _is_sum(k):
                    sums[k] = sums.get(k, 0.0) + v
                else:
                    sums[k] = sums.get(k, 0.0) + v * w
        return {"sums": sums, "maxima": maxima}

    def add(self, step_out: dict, group=None) -> None:
        """One update: ``train_step``'s result (with :meth:`partials` as ``collect``, made
        visible on every pipeline stage), reduced over the data-parallel ``group``."""
        sums = all_reduce_dict(step_out["sums"], dist.ReduceOp.SUM, group)
        maxima = all_reduce_dict(step_out["maxima"], dist.ReduceOp.MAX, group)
        for k, v in sums.items():
            if _is_sum(k):
                self.totals[k] = self.totals.get(k, 0.0) + v / self.updates
            else:
                self.weighted[k] = self.weighted.get(k, 0.0) + v
        self.weight += sums.get(WEIGHT, 0.0)
        for k, v in maxima.items():
            self.maxima[k] = max(self.maxima.get(k, -math.inf), v)
        for k in PER_UPDATE:
            if k in step_out:
                self.totals[k] = self.totals.get(k, 0.0) + float(step_out[k]) / self.updates

    def result(self) -> dict:
        out = dict(self.totals)
        out.update(self.maxima)
        out.update({k: v / max(self.weight, 1.0) for k, v in self.weighted.items()})
        return out


def all_reduce_dict(values: dict, op, group) -> dict:
    """Scalar values reduced with ``op`` over ``group`` in float64 (keys in sorted order)."""
    if not values or not dist.is_initialized() or dist.get_world_size(group) == 1:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=cuda_device_or_none())
    dist.all_reduce(t, op=op, group=group)
    return dict(zip(keys, t.tolist()))


@contextmanager
def phase(timings: dict, key: str):
    """Add the wall time of the ``with`` body to ``timings[key]`` (seconds)."""
    t = time.perf_counter()
    yield
    timings[key] = timings.get(key, 0.0) + time.perf_counter() - t


def step_metrics(step: int, batch: RolloutBatch, group_stats: GroupStats, train: dict, mismatch: dict,
                 timings: dict, ppo_epochs: int = 1) -> dict:
    """Step ``step``'s logged metrics: rollout statistics of the whole (gathered) batch, the merged
    loss metrics (``/`` in keys becomes ``_``), mismatch and source metrics, phase times.
    Token throughputs count real tokens (prompt + response), not padding."""
    comps, n = batch.components, float(len(batch))
    tokens = float(batch.row_lengths.sum())
    mean = float(batch.rewards.sum()) / n
    world = dist.get_world_size() if dist.is_initialized() else 1
    m = {
        "reward_mean": mean, "reward_std": max(float((batch.rewards**2).sum()) / n - mean**2, 0.0) ** 0.5,
        "accuracy": float(comps["accuracy"].sum()) / n,
        "format_rate": float(comps["format_rate"].sum()) / n if "format_rate" in comps else 0.0,
        "response_length_mean": float(batch.lengths.sum()) / n, "response_length_max": float(batch.lengths.max()),
        "truncated_fraction": float(batch.truncated.sum()) / n, "reward_errors": float(comps["reward_errors"].sum()),
        "rollout_tokens_per_s": float(batch.lengths.sum()) / max(timings["time_rollout"], 1e-9),
        # every rank's real tokens, x PPO epochs, over this rank's training time
        "train_tokens_per_s": tokens * ppo_epochs / max(timings["time_train"], 1e-9),
        "train_tokens_per_s_per_gpu": tokens * ppo_epochs / max(timings["time_train"], 1e-9) / world,
        "reward_group_std_mean": float(group_stats.std.mean()),
        "reward_constant_group_frac": float(group_stats.constant.float().mean()),
    }
    m.update({k.replace("/", "_"): v for k, v in train.items()})
    m.update({k.replace("/", "_"): v for k, v in mismatch.items()})
    aliases = {"kl_ref": "actor/ref_kl", "entropy": "actor/entropy"}
    m.update({new: train[old] for new, old in aliases.items() if old in train})
    if "actor/clip_frac_low" in train:
        m["clip_fraction"] = train["actor/clip_frac_low"] + train["actor/clip_frac_high"]
    if batch.versions is not None:  # how many updates behind the trained weights the samples are
        lag = step - batch.versions
        m.update(off_policy_lag_mean=float(lag.float().mean()), off_policy_lag_max=float(lag.max()))
    m.update(batch.source_metrics)
    m.update(timings)
    return m
