"""The no-grad log-prob passes of a GRPO step: the old policy and the frozen reference.

Both run through Megatron's forward-only schedule on the batch's micro-batches and fill
``batch.old_logp`` / ``batch.ref_logp`` (``[N, L]``, zero off the response positions). Only the
last pipeline stage holds log-probs; the other stages get zeros of the same shape, which they
never read (the loss is computed on the last stage).
"""

from __future__ import annotations

import torch

from r1mega.rl.batch import RolloutBatch
from r1mega.rl.config import GRPOConfig
from r1mega.rl.forward import logprob_step
from r1mega.rl.packing import Layout, schedule_shape, split
from r1mega.training.step import forward_only


class Reference:
    """The frozen reference policy: model chunks at the trainer's layout, holding the weights
    the run started from (``init``, a checkpoint iteration dir, else a copy of ``tm``'s)."""

    def __init__(self, cfg, dims, tm, init=None):
        from r1mega.training import checkpoint as ckpt
        from r1mega.training.setup import TrainModel, build_chunks

        chunks = build_chunks(cfg.model, dims, cfg.trainer.precision)
        if init is not None:
            ckpt.load_model_weights(init, chunks)
        else:
            for r, p in zip(chunks, tm.unwrapped()):
                r.load_state_dict(p.state_dict())
        for r in chunks:
            r.requires_grad_(False)
        self.model = TrainModel(chunks, None, None, tm.model_cfg, tm.dims)


def fill_logprobs(batch: RolloutBatch, tm, reference: Reference | None, rl: GRPOConfig, temperature: float,
                  vocab_limit: int, layout: Layout) -> None:
    """Set ``batch.old_logp`` when ``rl.needs_old_logp`` and ``batch.ref_logp`` when there is a
    reference, on the rows this rank owns (zeros elsewhere)."""
    from megatron.core import parallel_state as ps

    parts, mbs = split(batch, batch.owned_rows(), layout)
    step = logprob_step(temperature, vocab_limit)
    seq_length, mbs_arg = schedule_shape(mbs, layout)

    def run(model) -> torch.Tensor:
        out = forward_only(model, step, mbs, seq_length, mbs_arg)
        full = torch.zeros(len(batch), batch.seq_length)
        if ps.is_pipeline_last_stage():
            for rows, o in zip(parts, out):
                if rows:
                    full[torch.tensor(rows), : o["logp"].shape[1]] = o["logp"]
        return full

    if rl.needs_old_logp:
        batch.old_logp = run(tm)
    if reference is not None:
        batch.ref_logp = run(reference.model)
