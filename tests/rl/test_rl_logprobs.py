"""Vocab-parallel log-probs and entropy against a full-vocabulary float64 reference.

The reference is ``log_softmax`` over the whole vocabulary in float64 with autograd; the
implementation is a custom autograd Function with hand-written backward and partial
reductions over vocabulary shards. float64 agreement is at round-off level (~1e-15), so
1e-12 is used; fp32/bf16 tolerances are argued where they appear.
"""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

from r1mega.rl.logprobs import vocab_parallel_logprobs
from rl_dist_utils import init_gloo, spawn

B, T, V = 3, 4, 10


def _problem(dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(B, T, V, generator=g, dtype=torch.float64) * 3.0).to(dtype)
    target = torch.randint(0, V, (B, T), generator=g)
    target[0, :2] = torch.tensor([0, V - 1])  # first id of shard 0, last id of shard 1
    up_logp = torch.randn(B, T, generator=g, dtype=torch.float64)  # upstream gradients
    up_ent = torch.randn(B, T, generator=g, dtype=torch.float64)
    return logits, target, up_logp, up_ent


def _reference(logits, target, up_logp, up_ent, temperature):
    """float64 full-vocabulary log_softmax; returns logp, entropy, d(Σ up·logp + up·H)/dlogits."""
    z = logits.detach().double().requires_grad_(True)
    log_p = torch.log_softmax(z / temperature, dim=-1)
    logp = log_p.gather(-1, target[..., None]).squeeze(-1)
    entropy = -(log_p.exp() * log_p).sum(-1)
    (grad,) = torch.autograd.grad((up_logp * logp + up_ent * entropy).sum(), z)
    return logp.detach(), entropy.detach(), grad


def _run(logits, target, up_logp, up_ent, temperature, chunk_size=1024, group=None, vocab_limit=None):
    leaf = logits.detach().clone().requires_grad_(True)
    logp, entropy = vocab_parallel_logprobs(leaf, target, group=group, temperature=temperature, chunk_size=chunk_size,
                                            vocab_limit=vocab_limit)
    (grad,) = torch.autograd.grad((up_logp.to(logp.dtype) * logp + up_ent.to(logp.dtype) * entropy).sum(), leaf)
    return logp.detach(), entropy.detach(), grad


@pytest.mark.parametrize("chunk_size", [1, 5, 1024])
@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_single_rank_matches_float64_reference(temperature, chunk_size):
    problem = _problem()
    got = _run(*problem, temperature, chunk_size)
    want = _reference(*problem, temperature)
    for g, w in zip(got, want):
        assert g.dtype == torch.float64
        assert torch.allclose(g, w, rtol=1e-12, atol=1e-12)


def test_gradient_formulas_by_hand():
    """∂logp/∂z = onehot - p and ∂H/∂z = -p (log p + H), checked directly."""
    logits, target, _, _ = _problem()
    p = torch.softmax(logits, -1)
    h = -(p * p.log()).sum(-1, keepdim=True)
    onehot = torch.nn.functional.one_hot(target, V).double()
    ones, zeros = torch.ones(B, T, dtype=torch.float64), torch.zeros(B, T, dtype=torch.float64)
    _, _, g_logp = _run(logits, target, ones, zeros, 1.0)
    _, _, g_ent = _run(logits, target, zeros, ones, 1.0)
    assert torch.allclose(g_logp, onehot - p, rtol=1e-12, atol=1e-14)
    assert torch.allclose(g_ent, -p * (p.log() + h), rtol=1e-12, atol=1e-14)


def test_only_logp_used_in_loss():
    """Entropy output unused: its gradient arrives as None and must be treated as zero."""
    logits, target, up_logp, _ = _problem()
    leaf = logits.clone().requires_grad_(True)
    logp, _ = vocab_parallel_logprobs(leaf, target)
    (up_logp * logp).sum().backward()
    _, _, want = _reference(logits, target, up_logp, torch.zeros_like(up_logp), 1.0)
    assert torch.allclose(leaf.grad, want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_low_precision_inputs(dtype):
    """Computation is fp32 for fp32/bf16 logits. Reference: the same (rounded) logits in fp64.
    logsumexp over V=10 terms of magnitude <= ~10: a few fp32 ulps of 10 ~ 1e-6 absolute;
    tolerance 1e-5. The gradient is returned in the logits' dtype: bf16 keeps 8 significant
    bits, so its rounding is <= 2^-8 relative (+ the fp32 error): rtol 1e-2, atol 1e-3."""
    logits, target, up_logp, up_ent = _problem(dtype)
    logp, entropy, grad = _run(logits, target, up_logp, up_ent, 0.6)
    want = _reference(logits.double(), target, up_logp, up_ent, 0.6)
    assert logp.dtype == torch.float32 and grad.dtype == dtype
    assert torch.allclose(logp.double(), want[0], atol=1e-5, rtol=0)
    assert torch.allclose(entropy.double(), want[1], atol=1e-5, rtol=0)
    tol = (1e-2, 1e-3) if dtype == torch.bfloat16 else (1e-5, 1e-6)
    assert torch.allclose(grad.double(), want[2], rtol=tol[0], atol=tol[1])


def test_megatron_sbv_layout_is_the_transpose():
    logits, target, up_logp, up_ent = _problem()
    bt = _run(logits, target, up_logp, up_ent, 1.0)
    tb = _run(logits.transpose(0, 1).contiguous(), target.t().contiguous(), up_logp.t(), up_ent.t(), 1.0)
    for a, b in zip(bt, tb):
        assert torch.equal(a, b.transpose(0, 1))


def full_vocab_logprobs(logits: torch.Tensor, target: torch.Tensor, temperature: float = 1.0):
    """Reference with the whole vocabulary local (plain ``log_softmax``); same return convention
    as ``vocab_parallel_logprobs``."""
    compute = torch.promote_types(logits.dtype, torch.float32)
    log_p = torch.log_softmax(logits.to(compute) / temperature, dim=-1)
    logp = log_p.gather(-1, target.long().unsqueeze(-1)).squeeze(-1)
    entropy = -(log_p.exp() * log_p).sum(-1)
    return logp, entropy


def test_full_vocab_helper_and_no_grad_path():
    logits, target, _, _ = _problem()
    with torch.no_grad():
        logp, entropy = vocab_parallel_logprobs(logits, target)
    ref_logp, ref_ent = full_vocab_logprobs(logits, target)
    assert torch.allclose(logp, ref_logp, rtol=1e-12) and torch.allclose(entropy, ref_ent, rtol=1e-12)


def test_same_logits_give_bitwise_equal_logprobs():
    """old_logp recomputed by the trainer with the same weights equals the live logp exactly,
    so the first on-policy step has ratio exactly 1."""
    logits, target, _, _ = _problem(torch.float32)
    with torch.no_grad():
        old, _ = vocab_parallel_logprobs(logits, target)
    live, _ = vocab_parallel_logprobs(logits.clone().requires_grad_(True), target)
    assert torch.equal(torch.exp(live - old), torch.ones_like(old))


def test_padding_targets_are_harmless():
    logits, target, up_logp, up_ent = _problem()
    target[1, 2:] = -100
    logp, entropy, grad = _run(logits, target, up_logp, up_ent, 1.0)
    assert torch.isfinite(logp).all() and torch.isfinite(entropy).all() and torch.isfinite(grad).all()


def _limited(limit: int, seed: int = 1):
    """A problem whose targets are all below ``limit`` and its float64 reference over the
    first ``limit`` ids (padding ids have probability 0, hence no gradient)."""
    logits, target, up_logp, up_ent = _problem(seed=seed)
    target = target % limit
    want_logp, want_ent, want_grad = _reference(logits[..., :limit], target, up_logp, up_ent, 0.7)
    grad = torch.zeros_like(logits)
    grad[..., :limit] = want_grad
    return (logits, target, up_logp, up_ent), (want_logp, want_ent, grad)


@pytest.mark.parametrize("limit", [1, 7, V])
def test_vocab_limit_excludes_padding_ids(limit):
    problem, want = _limited(limit)
    got = _run(*problem, 0.7, 3, vocab_limit=limit)
    for g, w in zip(got, want):
        assert torch.allclose(g, w, rtol=1e-12, atol=1e-12)


def test_vocab_limit_keeps_bf16_logits_and_grads_in_their_dtype():
    problem, want = _limited(7)
    logits = problem[0].to(torch.bfloat16)
    logp, entropy, grad = _run(logits, *problem[1:], 0.7, 3, vocab_limit=7)
    assert logp.dtype == torch.float32 and grad.dtype == torch.bfloat16  # fp32 only inside the reductions
    assert torch.all(grad[..., 7:] == 0)
    # bf16 inputs (8 mantissa bits) against the float64 reference of the exact inputs: the
    # input rounding (~3e-2 absolute on logits of ~3) dominates, as in test_low_precision_inputs
    assert torch.allclose(logp.double(), want[0], atol=0.1)


def test_user_errors():
    logits, target, _, _ = _problem()
    with pytest.raises(ValueError, match="must be target"):
        vocab_parallel_logprobs(logits, target[:, :2])
    with pytest.raises(ValueError, match="temperature"):
        vocab_parallel_logprobs(logits, target, temperature=0.0)
    with pytest.raises(ValueError, match="chunk_size"):
        vocab_parallel_logprobs(logits, target, chunk_size=0)


# -------------------------------------------------------------------------- two TP ranks


def _shard(x, rank, world):
    v_local = x.shape[-1] // world
    return x[..., rank * v_local : (rank + 1) * v_local]


def _tp_worker(rank, world_size, port, out_dir):
    init_gloo(rank, world_size, port)
    results = {}
    problem = _problem()
    logits, target, up_logp, up_ent = problem
    # 1. An explicit process group (the whole world = the TP group here), fp64, chunked.
    for temperature, chunk in [(1.0, 1024), (0.6, 5)]:
        results[f"world_T{temperature}"] = _run(_shard(logits, rank, 2), target, up_logp, up_ent,
                                                temperature, chunk, group=dist.group.WORLD)
    # 2. fp32 through the same group.
    results["world_fp32"] = _run(_shard(logits.float(), rank, 2), target, up_logp, up_ent, 0.6, 3,
                                 group=dist.group.WORLD)
    # 3. A TP group of size 1 (every rank holds the full vocabulary): no communication.
    singles = [dist.new_group([r]) for r in range(world_size)]
    results["single"] = _run(logits, target, up_logp, up_ent, 0.6, 5, group=singles[rank])
    # 2b. a vocabulary limit inside shard 1 (7 of 10) and one that leaves shard 1 empty (4)
    for limit in (7, 4):
        problem_l, _ = _limited(limit)
        results[f"limit{limit}"] = _run(_shard(problem_l[0], rank, 2), *problem_l[1:], 0.7, 3,
                                        group=dist.group.WORLD, vocab_limit=limit)
    # 4. Megatron's own TP group, and a cross-check with Megatron's vocab-parallel cross entropy
    #    (which uses the same shard convention) on the [s, b, v] layout.
    from r1mega.compat import cpu

    cpu.enable()
    from megatron.core import parallel_state, tensor_parallel

    parallel_state.initialize_model_parallel(tensor_model_parallel_size=2)
    group = parallel_state.get_tensor_model_parallel_group()
    results["megatron"] = _run(_shard(logits, rank, 2), target, up_logp, up_ent, 1.0, 4, group=group)
    sbv = _shard(logits, rank, 2).transpose(0, 1).contiguous()
    results["megatron_ce"] = tensor_parallel.vocab_parallel_cross_entropy(sbv.clone(), target.t().contiguous()).t()
    parallel_state.destroy_model_parallel()
    torch.save(results, f"{out_dir}/rank{rank}.pt")
    dist.destroy_process_group()


def test_two_tp_ranks_match_full_vocabulary(tmp_path):
    spawn(_tp_worker, 2, tmp_path)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    problem = _problem()
    for key, temperature, tol in [("world_T1.0", 1.0, 1e-12), ("world_T0.6", 0.6, 1e-12),
                                  ("single", 0.6, 1e-12), ("megatron", 1.0, 1e-12),
                                  ("world_fp32", 0.6, 1e-5)]:  # fp32: as in test_low_precision_inputs
        want_logp, want_ent, want_grad = _reference(*problem, temperature)
        for r in range(2):
            logp, entropy, _ = ranks[r][key]
            assert torch.allclose(logp.double(), want_logp, rtol=tol, atol=tol), key
            assert torch.allclose(entropy.double(), want_ent, rtol=tol, atol=tol), key
        if key == "single":
            grads = [ranks[r][key][2] for r in range(2)]
            assert all(torch.allclose(g.double(), want_grad, rtol=tol, atol=tol) for g in grads)
        else:  # each rank holds the gradient of its own vocabulary shard
            grad = torch.cat([ranks[0][key][2], ranks[1][key][2]], dim=-1)
            assert torch.allclose(grad.double(), want_grad, rtol=tol, atol=tol), key
    for limit in (7, 4):
        _, (want_logp, want_ent, want_grad) = _limited(limit)
        for r in range(2):
            logp, entropy, _ = ranks[r][f"limit{limit}"]
            assert torch.allclose(logp, want_logp, rtol=1e-12, atol=1e-12), limit
            assert torch.allclose(entropy, want_ent, rtol=1e-12, atol=1e-12), limit
        grad = torch.cat([ranks[0][f"limit{limit}"][2], ranks[1][f"limit{limit}"][2]], dim=-1)
        assert torch.allclose(grad, want_grad, rtol=1e-12, atol=1e-12), limit
    for r in range(2):  # Megatron's cross entropy works in fp32: magnitudes ~10, a few ulps ~ 1e-6
        assert ranks[r]["megatron_ce"].dtype == torch.float32
        assert torch.allclose(-ranks[r]["megatron_ce"].double(), ranks[r]["megatron"][0], rtol=0, atol=1e-5)
