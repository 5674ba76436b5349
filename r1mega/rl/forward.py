"""Megatron forward-step functions for RL: log-probs (no grad) and the GRPO loss.

Both run through ``get_forward_backward_func`` so pipeline, tensor and expert parallelism
work as in training. Log-probs are computed from the vocab-sharded logits without gathering
the vocabulary (:func:`r1mega.rl.logprobs.vocab_parallel_logprobs`); logits of padded vocab
rows (ids >= the tokenizer's size, which the model never sees) get zero probability, exactly
as in the rollout engines, so trainer and engine share one distribution.
"""

from __future__ import annotations

import torch

from r1mega.device import device
from r1mega.rl.batch import MicroBatch
from r1mega.rl.config import GRPOConfig
from r1mega.rl.logprobs import vocab_parallel_logprobs
from r1mega.rl.losses import grpo_microbatch_loss


MASKED_LOGIT = -1.0e4  # exp(-1e4 - max) is exactly 0 in fp32, and 0 * -1e4 is 0 (no NaN entropy)


def masked_vocab_logits(logits: torch.Tensor, vocab_limit: int) -> torch.Tensor:
    """A very negative finite logit on this TP shard's columns whose global id is >=
    vocab_limit (-inf would turn p*log(p) in the entropy into NaN)."""
    from megatron.core import parallel_state as ps

    v_local = logits.shape[-1]
    start = ps.get_tensor_model_parallel_rank() * v_local
    if start + v_local <= vocab_limit:
        return logits
    ids = torch.arange(start, start + v_local, device=logits.device)
    return logits.masked_fill(ids >= vocab_limit, MASKED_LOGIT)


def token_logprobs(model, batch: MicroBatch, temperature: float, vocab_limit: int):
    """(logits-producing output, the micro-batch on the device, fn(logits) -> (logp, entropy))."""
    from megatron.core import parallel_state as ps

    b = batch.to(device())
    if b.packed:
        out = model(b.tokens, b.position_ids, None, packed_seq_params=b.packed_seq_params())
    else:
        out = model(b.tokens, b.position_ids, None)

    def logp_entropy(logits):
        """Per-token log-probs and entropies as ``[b, L]`` rows (packed ones unpacked)."""
        logits = masked_vocab_logits(logits.float(), vocab_limit)
        logp, entropy = vocab_parallel_logprobs(logits, b.labels, group=ps.get_tensor_model_parallel_group(),
                                                temperature=temperature)
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
