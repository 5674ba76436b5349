"""Megatron forward-step functions for RL: log-probs (no grad) and the GRPO loss.

Both run through ``get_forward_backward_func`` so pipeline, tensor and expert parallelism
work as in training. Log-probs are computed from the vocab-sharded logits without gathering
the vocabulary (:func:`r1mega.rl.logprobs.vocab_parallel_logprobs`); logits of padded vocab
rows (ids >= the tokenizer's size, which the model never sees) get zero probability, exactly
as in the rollout engines, so trainer and engine share one distribution. Logits stay in the
model's dtype (bf16 on GPU): the kernel slices off the padded ids and converts one chunk of
tokens at a time to fp32, so no fp32 copy of the ``[tokens, V]`` logits is ever made.
"""

from __future__ import annotations

import torch

from r1mega.device import device
from r1mega.rl.batch import MicroBatch
from r1mega.rl.config import GRPOConfig
from r1mega.rl.logprobs import vocab_parallel_logprobs
from r1mega.rl.losses import grpo_microbatch_loss


def _casts_output(model) -> bool:
    """Whether the chunk is wrapped in Megatron's Float16Module, which would cast the whole
    ``[tokens, V]`` logits to fp32; the log-prob kernel converts chunk by chunk instead."""
    from megatron.core.transformer.module import Float16Module

    return isinstance(model, Float16Module) or isinstance(getattr(model, "module", None), Float16Module)


def token_logprobs(model, batch: MicroBatch, temperature: float, vocab_limit: int):
    """(logits-producing output, the micro-batch on the device, fn(logits) -> (logp, entropy))."""
    from megatron.core import parallel_state as ps

    b = batch.to(device())
    kwargs = {"fp32_output": False} if _casts_output(model) else {}
    if b.packed:
        kwargs["packed_seq_params"] = b.packed_seq_params()
    out = model(b.tokens, b.position_ids, None, **kwargs)

    def logp_entropy(logits):
        """Per-token log-probs and entropies as ``[b, L]`` rows (packed ones unpacked)."""
        logp, entropy = vocab_parallel_logprobs(logits, b.labels, group=ps.get_tensor_model_parallel_group(),
                                                temperature=temperature, vocab_limit=vocab_limit)
        return b.unpack(logp), b.unpack(entropy)

    return out, b, logp_entropy


def logprob_step(temperature: float, vocab_limit: int):
    """forward_step_func returning per-token log-probs in the metrics dict (forward only)."""

    def forward_step(data_iterator, model):
        out, b, logp_entropy = token_logprobs(model, next(data_iterator), temperature, vocab_limit)

        def loss_func(logits):
            logp, _ = logp_entropy(logits)
            return logits.sum() * 0.0, {"logp": (logp * b.mask).detach().cpu()}

        return out, loss_func

    return forward_step


def grpo_step(cfg: GRPOConfig, temperature: float, vocab_limit: int, denominator: float, scale: float):
    """forward_step_func for one GRPO micro-batch (loss pre-scaled, see training.step)."""

    def forward_step(data_iterator, model):
        out, b, logp_entropy = token_logprobs(model, next(data_iterator), temperature, vocab_limit)

        def loss_func(logits):
            logp, entropy = logp_entropy(logits)
            old = b.old_logp if b.old_logp is not None else logp.detach()
            loss, metrics = grpo_microbatch_loss(
                cfg, logp, old, b.advantages, b.mask, denominator,
                ref_logp=b.ref_logp, entropy=entropy, is_weights=b.is_weights,
            )
            reported = {k: v.detach().float().cpu() for k, v in metrics.items() if torch.is_tensor(v) and v.numel() == 1}
            reported["loss"] = loss.detach().float().cpu()
            return loss * scale, reported

        return out, loss_func

    return forward_step
