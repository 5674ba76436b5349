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
        sums = _all_reduce(step_out["sums"], dist.ReduceOp.SUM, group)
        maxima = _all_reduce(step_out["maxima"], dist.ReduceOp.MAX, group)
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


def _all_reduce(values: dict, op, group) -> dict:
    if not values or not dist.is_initialized() or dist.get_world_size(group) == 1:
        return values
    keys = sorted(values)
    device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else None
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=op, group=group)
    return dict(zip(keys, t.tolist()))


@contextmanager
def phase(timings: dict, key: str):
    """Add the wall time of the ``with`` body to ``timings[key]`` (seconds)."""
    t = time.perf_counter()
    yield
    timings[key] = timings.get(key, 0.0) + time.perf_counter() - t


def step_metrics(batch: RolloutBatch, group_stats: GroupStats, train: dict, mismatch: dict, timings: dict,
                 dp_group, ppo_epochs: int = 1) -> dict:
    """The step's logged metrics: rollout statistics over all DP ranks, the merged loss
    metrics (``/`` in keys becomes ``_``), mismatch metrics and phase times."""
    comps, n_tokens = batch.components, float(batch.mask.numel())
    local = {
        "reward_sum": float(batch.rewards.sum()), "reward_sq": float((batch.rewards**2).sum()),
        "n": float(len(batch.rewards)),
        "acc_sum": float(comps["accuracy"].sum()), "len_sum": float(batch.lengths.sum()),
        "len_max": float(batch.lengths.max()), "trunc": float(batch.truncated.sum()),
        "fmt_sum": float(comps.get("format_rate", torch.zeros(1)).sum()),
        "err_sum": float(comps["reward_errors"].sum()),
        "gen_tokens": float(sum(len(g.token_ids) for g in batch.generations)),
        "train_tokens": n_tokens * ppo_epochs,  # forward+backward passes over the batch
        "groups": float(len(group_stats.mean)), "group_std_sum": float(group_stats.std.sum()),
        "constant_groups": float(group_stats.constant.float().sum()),
    }
    if dist.is_initialized() and dist.get_world_size(dp_group) > 1:
        parts = [None] * dist.get_world_size(dp_group)
        dist.all_gather_object(parts, local, group=dp_group)
        local = {k: (max if k == "len_max" else sum)(p[k] for p in parts) for k in local}
    n = local["n"]
    mean = local["reward_sum"] / n
    m = {
        "reward_mean": mean, "reward_std": max(local["reward_sq"] / n - mean**2, 0.0) ** 0.5,
        "accuracy": local["acc_sum"] / n, "format_rate": local["fmt_sum"] / n,
        "response_length_mean": local["len_sum"] / n, "response_length_max": local["len_max"],
        "truncated_fraction": local["trunc"] / n, "reward_errors": local["err_sum"],
        "rollout_tokens_per_s": local["gen_tokens"] / max(timings["time_rollout"], 1e-9),
        "train_tokens_per_s": n_tokens / max(timings["time_train"], 1e-9),
        # (padded) tokens all ranks trained on, x PPO epochs, over this rank's training time, per GPU
        "train_tokens_per_s_per_gpu": local["train_tokens"] / max(timings["time_train"], 1e-9)
        / (dist.get_world_size() if dist.is_initialized() else 1),
        "reward_group_std_mean": local["group_std_sum"] / local["groups"],
        "reward_constant_group_frac": local["constant_groups"] / local["groups"],
    }
    m.update({k.replace("/", "_"): v for k, v in train.items()})
    m.update({k.replace("/", "_"): v for k, v in mismatch.items()})
    aliases = {"kl_ref": "actor/ref_kl", "entropy": "actor/entropy"}
    m.update({new: train[old] for new, old in aliases.items() if old in train})
    if "actor/clip_frac_low" in train:
        m["clip_fraction"] = train["actor/clip_frac_low"] + train["actor/clip_frac_high"]
    m.update(batch.source_metrics)
    m.update(timings)
    return m
