"""The CPU compatibility layer: each redirect is in place and behaves as documented."""

from __future__ import annotations

import pytest
import torch

from r1mega.compat import cpu

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="the redirects apply only without CUDA")


def test_redirects_are_applied_and_listed():
    assert cpu.enable() is True
    assert cpu.enable() is True  # idempotent
    for name in ("current_device", "Stream", "rng_tracker", "cuda_literal_factories",
                 "clip_grad_by_total_norm_fp32", "mla_have_te"):
        assert name in cpu.APPLIED
    assert torch.cuda.current_device() == torch.device("cpu")
    from megatron.core.optimizer import clip_grads

    assert clip_grads.torch.zeros(2, device="cuda").device.type == "cpu"


def test_rng_tracker_forks_and_restores_the_cpu_generator():
    cpu.enable()
    cpu.reset_rng_tracker()
    from megatron.core.tensor_parallel import get_cuda_rng_tracker

    tracker = get_cuda_rng_tracker()
    tracker.add("model-parallel-rng", 123)
    torch.manual_seed(0)
    outside_before = torch.get_rng_state()
    with tracker.fork():
        a = torch.rand(3)
    assert torch.equal(torch.get_rng_state(), outside_before)
    with tracker.fork():
        b = torch.rand(3)
    assert not torch.equal(a, b)  # the forked stream advances
    g = torch.Generator().manual_seed(123)
    assert torch.equal(a, torch.rand(3, generator=g))
    cpu.reset_rng_tracker()


def test_clip_grad_scales_like_megatron():
    p = torch.nn.Parameter(torch.ones(4))
    p.grad = torch.full((4,), 2.0)  # norm 4
    cpu._clip_grad_by_total_norm_fp32([p], max_norm=1.0, total_norm=4.0)
    assert torch.allclose(p.grad, torch.full((4,), 2.0 / (4.0 + 1e-6)))
    p.grad = torch.full((4,), 0.1)
    cpu._clip_grad_by_total_norm_fp32([p], max_norm=1.0, total_norm=0.2)
    assert torch.equal(p.grad, torch.full((4,), 0.1))
