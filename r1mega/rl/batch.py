"""From generations to training tensors: one row per response, aligned to next-token labels.

A row is ``prompt + response``; position ``j`` predicts token ``j + 1``, so the response tokens
``seq[P:]`` are predicted at positions ``P-1 .. P+R-2`` and those positions form the loss mask.
Per-token tensors (rollout log-probs, old/reference log-probs) live on the same positions, so
every quantity the loss needs is a ``[B, L]`` tensor masked by the same ``mask``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist

from r1mega.device import cuda_device_or_none


@dataclass
class Rollout:
    """One rollout batch on this rank (all prompts x G responses), as padded tensors."""

    tokens: torch.Tensor  # [N, L] inputs
    labels: torch.Tensor  # [N, L] next tokens
    mask: torch.Tensor  # [N, L] 1.0 on response positions
    rollout_logp: torch.Tensor  # [N, L] engine log-probs on response positions
    truncated: torch.Tensor  # [N] bool
    lengths: torch.Tensor  # [N] response lengths

    def __len__(self) -> int:
        return self.tokens.shape[0]


def agreed_length(generations: list, multiple: int = 16) -> int:
    """Row length for this step on every rank: the longest ``prompt + response - 1`` over all
    ranks (an all-reduce when distributed), rounded up to ``multiple``."""
    longest = max(len(g.prompt_ids) + len(g.token_ids) for g in generations) - 1
    if dist.is_initialized() and dist.get_world_size() > 1:
        device = cuda_device_or_none()
        t = torch.tensor([longest], device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        longest = int(t.item())
    return (longest + multiple - 1) // multiple * multiple


def build_rollout(generations: list, pad_id: int, fixed_length: int | None = None) -> Rollout:
    rows = [list(g.prompt_ids) + list(g.token_ids) for g in generations]
    longest = max(len(r) for r in rows) - 1
    length = fixed_length or (longest + 15) // 16 * 16
    if longest > length:
        raise ValueError(f"a rollout of {longest + 1} tokens exceeds data.seq_length={length}")
    n = len(rows)
    tokens = torch.full((n, length), pad_id, dtype=torch.long)
    labels = torch.full((n, length), pad_id, dtype=torch.long)
    mask = torch.zeros(n, length)
    rollout_logp = torch.zeros(n, length)
    for i, (row, g) in enumerate(zip(rows, generations)):
        p, r = len(g.prompt_ids), len(g.token_ids)
        tokens[i, : len(row) - 1] = torch.tensor(row[:-1])
        labels[i, : len(row) - 1] = torch.tensor(row[1:])
        mask[i, p - 1 : p - 1 + r] = 1.0
        rollout_logp[i, p - 1 : p - 1 + r] = torch.tensor(g.logprobs, dtype=torch.float32)
    return Rollout(
        tokens, labels, mask, rollout_logp,
        torch.tensor([g.truncated for g in generations]),
        torch.tensor([len(g.token_ids) for g in generations]),
    )


def micro_batches(rollout: Rollout, per_sample: dict, per_token: dict, rows: list[int], size: int) -> list[dict]:
    """Dicts of tensors for the rows ``rows`` of the rollout, ``size`` rows each, trimmed to the
    longest row in the micro-batch (no pipeline) so short batches cost less."""
    out = []
    for j in range(0, len(rows), size):
        idx = torch.tensor(rows[j : j + size])
        b = {
            "tokens": rollout.tokens[idx], "labels": rollout.labels[idx], "mask": rollout.mask[idx],
            "rollout_logp": rollout.rollout_logp[idx],
        }
        b.update({k: v[idx] for k, v in per_sample.items()})
        b.update({k: v[idx] for k, v in per_token.items()})
        b["position_ids"] = torch.arange(b["tokens"].shape[1]).expand_as(b["tokens"]).contiguous()
        out.append(b)
    return out
