"""Log-probabilities of target tokens and entropy from vocab-parallel logits.

Under Megatron tensor parallelism the output layer is column-parallel: TP rank k holds the
logits of its vocabulary slice [k·V_local, (k+1)·V_local) and nothing else. Gathering the
full vocabulary (~130k entries per token for DeepSeek-V3) would cost TP times the memory and
a large all-gather, so we compute everything from per-shard partial reductions, in fp32
(fp64 input stays fp64), over chunks of tokens to bound the temporaries:

    z       = logits / T                      (sampling temperature of the rollout)
    m       = max_v z_v                       all-reduce MAX  (for a stable exp)
    s       = Σ_v exp(z_v - m)                all-reduce SUM
    lse     = m + log s
    z_y     = z at the target id              only its owner has it: the others contribute 0,
                                              all-reduce SUM
    logp    = z_y - lse
    H       = -Σ p_v log p_v = log s - Σ_v exp(z_v - m)(z_v - m) / s      (all-reduce SUM)

The three sums go in one all-reduce. With p = softmax(z) the gradients only need p on the
local shard and the already reduced lse, H, so the backward needs no communication:

    ∂logp/∂z_v = 1[v = y] - p_v
    ∂H/∂z_v    = -p_v (log p_v + H)
    ∂/∂logits  = ∂/∂z / T

(Megatron's column-parallel output layer all-reduces its input gradient across TP itself.)
The backward recomputes p chunk by chunk from the saved logits and per-token lse, so no
``[tokens, V_local]`` fp32 tensor outlives a chunk.

Layout: any leading shape. ``logits`` is ``[..., V_local]`` and ``target`` the matching
``[...]`` of *global* vocabulary ids, already shifted (target[t] is the token that follows
position t). The training code passes ``[B, T, V_local]`` with ``[B, T]`` labels; Megatron's
native ``[T, B, V_local]`` works equally with ``[T, B]`` labels (pass it as is: a transpose
would force a copy). Targets outside [0, V) (padding such as -100) give meaningless values
that the loss mask must drop. Logits must be finite.

``group`` is the tensor-parallel process group (e.g.
``parallel_state.get_tensor_model_parallel_group()``); None means the logits hold the full
vocabulary and nothing is communicated. Shard k covers ids starting at k·V_local, as in
Megatron's ``VocabUtility``.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.distributed as dist


def _shard_start(v_local: int, group: Optional[dist.ProcessGroup]) -> int:
    if group is None:
        return 0
    return dist.get_rank(group) * v_local


def _all_reduce(x: torch.Tensor, op, group) -> torch.Tensor:
    if group is not None and dist.get_world_size(group) > 1:
        dist.all_reduce(x, op=op, group=group)
    return x


def _forward_chunk(z: torch.Tensor, target: torch.Tensor, start: int, group):
    """z: [n, V_valid] scaled logits in compute dtype (this shard's ids below the vocabulary
    limit; possibly none). Returns (logp, lse, entropy), each [n]."""
    if z.shape[-1] == 0:  # a shard of padding ids only: it adds nothing but joins the collectives
        m = torch.full(z.shape[:-1], -torch.inf, dtype=z.dtype, device=z.device)
    else:
        m = z.max(dim=-1).values
    _all_reduce(m, dist.ReduceOp.MAX, group)
    shifted = z - m[:, None]
    e = torch.exp(shifted)
    local = target - start
    owned = (local >= 0) & (local < z.shape[-1])
    if z.shape[-1] == 0:
        picked = torch.zeros_like(m)
    else:
        picked = shifted.gather(-1, local.clamp(0, z.shape[-1] - 1)[:, None]).squeeze(-1)
    sums = torch.stack([e.sum(-1), (e * shifted).sum(-1), torch.where(owned, picked, 0.0)], dim=-1)
    _all_reduce(sums, dist.ReduceOp.SUM, group)
    s, e_shifted, target_shifted = sums.unbind(-1)
    log_s = torch.log(s)
    logp = target_shifted - log_s
    entropy = log_s - e_shifted / s
    return logp, m + log_s, entropy


def _backward_chunk(z, target, start, lse, entropy, grad_logp, grad_entropy):
    """Gradient w.r.t. z for one chunk; grads may be None (output unused)."""
    log_p = z - lse[:, None]
    p = torch.exp(log_p)
    grad = torch.zeros_like(z)
    if grad_logp is not None:
        grad -= p * grad_logp[:, None]
        local = target - start
        owned = (local >= 0) & (local < z.shape[-1])
        rows = owned.nonzero().squeeze(-1)
        grad[rows, local[rows]] += grad_logp[rows]
    if grad_entropy is not None:
        grad -= p * (log_p + entropy[:, None]) * grad_entropy[:, None]
    return grad


class _VocabParallelLogProbs(torch.autograd.Function):
    """(logits [N, V_local], target [N]) -> (logp [N], entropy [N]); see module doc."""

    @staticmethod
    def forward(ctx, logits, target, group, temperature, chunk_size, valid):
        compute = torch.promote_types(logits.dtype, torch.float32)
        start = _shard_start(logits.shape[-1], group)
        n = logits.shape[0]
        logp = torch.empty(n, dtype=compute, device=logits.device)
        lse, entropy = torch.empty_like(logp), torch.empty_like(logp)
        for a in range(0, n, chunk_size):
            z = logits[a : a + chunk_size, :valid].to(compute) / temperature
            logp[a : a + chunk_size], lse[a : a + chunk_size], entropy[a : a + chunk_size] = _forward_chunk(
                z, target[a : a + chunk_size], start, group
            )
        ctx.save_for_backward(logits, target, lse, entropy)
        ctx.group, ctx.temperature, ctx.chunk_size, ctx.start, ctx.valid = group, temperature, chunk_size, start, valid
        ctx.set_materialize_grads(False)
        return logp, entropy

    @staticmethod
    def backward(ctx, grad_logp, grad_entropy):
        logits, target, lse, entropy = ctx.saved_tensors
        if grad_logp is None and grad_entropy is None:
            return None, None, None, None, None, None
        compute, valid = lse.dtype, ctx.valid
        # ids at or above the vocabulary limit have probability 0: their gradient is 0
        grad_logits = torch.empty_like(logits) if valid == logits.shape[-1] else torch.zeros_like(logits)
        for a in range(0, logits.shape[0], ctx.chunk_size):
            b = a + ctx.chunk_size
            z = logits[a:b, :valid].to(compute) / ctx.temperature
            grad_z = _backward_chunk(
                z,
                target[a:b],
                ctx.start,
                lse[a:b],
                entropy[a:b],
                None if grad_logp is None else grad_logp[a:b].to(compute),
                None if grad_entropy is None else grad_entropy[a:b].to(compute),
            )
            grad_logits[a:b, :valid] = (grad_z / ctx.temperature).to(logits.dtype)
        return grad_logits, None, None, None, None, None


def vocab_parallel_logprobs(
    logits: torch.Tensor,
    target: torch.Tensor,
    group: Optional[dist.ProcessGroup] = None,
    temperature: float = 1.0,
    chunk_size: int = 1024,
    vocab_limit: Optional[int] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-prob of ``target`` and entropy of softmax(logits / temperature), both shaped like
    ``target`` in fp32 (fp64 for fp64 logits), differentiable w.r.t. ``logits``.

    ``vocab_limit``: ids at or above it (the padding rows of a vocabulary rounded up for TP and
    GEMM shapes, which the tokenizer never produces) get probability exactly 0. They are left
    out by slicing this shard's columns, so no masked copy of the logits is made; any dtype
    goes in and only each chunk is converted to fp32.

    ``logits``: ``[..., V_local]``, this rank's vocabulary shard (full vocab when ``group`` is
    None or has one rank). ``target``: ``[...]`` global token ids. Collective over ``group``:
    every TP rank must call it with the same token layout. ``chunk_size`` tokens are processed
    at a time. See the module docstring for the maths and layout.
    """
    if logits.shape[:-1] != target.shape:
        raise ValueError(f"logits {tuple(logits.shape)} must be target {tuple(target.shape)} + [V_local]")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if logits.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        raise ValueError(f"logits must be floating point, got {logits.dtype}")
    v_local = logits.shape[-1]
    valid = v_local
    if vocab_limit is not None:
        valid = max(0, min(v_local, vocab_limit - _shard_start(v_local, group)))
    flat_logits = logits.reshape(-1, v_local)
    flat_target = target.reshape(-1).long()
    logp, entropy = _VocabParallelLogProbs.apply(
        flat_logits, flat_target, group, float(temperature), int(chunk_size), valid
    )
    return logp.view(target.shape), entropy.view(target.shape)
