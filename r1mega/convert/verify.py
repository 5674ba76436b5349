"""Logits parity between a HF checkpoint (run by transformers) and an r1mega checkpoint.

Both models run in fp32 on the same random tokens; the result is one dict::

    {"max_abs_diff": ..., "mean_abs_diff": ..., "top1_agreement": ..., "tokens": b*s}

``top1_agreement`` is the fraction of positions whose argmax token agrees. Only the main head
is compared: transformers' causal LM ignores DeepSeek's multi-token-prediction layers, and a
Megatron forward without labels skips them (``r1mega.models.mtp``).
:func:`megatron_logits` is a forward that works at any layout: with pipeline parallelism,
each stage receives the hidden states of the previous one (a plain send/recv between the
peer ranks of adjacent stages; under sequence parallelism each TP rank passes its sequence
slice), and the last stage returns the full-vocabulary logits (gathered over TP, padding
dropped). Non-last stages return None.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
import torch.distributed as dist

from r1mega.config.errors import InputError
from r1mega.convert import layout
from r1mega.convert.hf_io import HFReader
from r1mega.convert.mappings import architecture_mismatches, model_config_from_hf
from r1mega.convert.megatron_io import barrier, build_chunk, load_model, rank, setup
from r1mega.device import device
from r1mega.training.ckpt_layout import latest_iteration_dir


def random_tokens(vocab_size: int, batch: int = 2, seq_len: int = 32, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab_size, (batch, seq_len), generator=gen)


@torch.no_grad()
def hf_logits(hf_path: str | Path, tokens: torch.Tensor) -> torch.Tensor:
    """``[batch, seq, vocab]`` fp32 logits of the transformers model."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(hf_path), dtype=torch.float32).eval()
    return model(input_ids=tokens).logits.float()


def stage_inputs(chunk, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens and positions on the chunk's device; on a stage after the first, the previous
    stage's hidden states are received and set as the chunk's input first."""
    from megatron.core import parallel_state as ps

    device = next(chunk.parameters()).device
    batch, seq = tokens.shape
    tokens = tokens.to(device)
    positions = torch.arange(seq, device=device).unsqueeze(0).expand(batch, seq)
    if not chunk.pre_process:
        tp = ps.get_tensor_model_parallel_world_size()
        rows = seq // tp if chunk.config.sequence_parallel else seq
        hidden = torch.empty(rows, batch, chunk.config.hidden_size, dtype=chunk.config.params_dtype, device=device)
        dist.recv(hidden, src=ps.get_pipeline_model_parallel_prev_rank())
        chunk.set_input_tensor(hidden)
    return tokens, positions


@torch.no_grad()
def megatron_logits(chunk, tokens: torch.Tensor, vocab_size: int) -> Optional[torch.Tensor]:
    """``[batch, seq, vocab]`` logits on last-stage ranks, None elsewhere (see module doc)."""
    from megatron.core import parallel_state as ps

    tokens, positions = stage_inputs(chunk, tokens)
    out = chunk(tokens if chunk.pre_process else None, positions, None, runtime_gather_output=True)
    if not chunk.post_process:
        dist.send(out.contiguous(), dst=ps.get_pipeline_model_parallel_next_rank())
        return None
    return out[..., :vocab_size].float().cpu()


def compare(reference: torch.Tensor, candidate: torch.Tensor) -> dict:
    """Max/mean absolute difference and top-1 agreement of two logits tensors."""
    if reference.shape != candidate.shape:
        raise ValueError(f"logits shapes differ: {tuple(reference.shape)} vs {tuple(candidate.shape)}")
    diff = (reference - candidate).abs()
    agree = (reference.argmax(-1) == candidate.argmax(-1)).float().mean()
    return {
        "max_abs_diff": diff.max().item(),
        "mean_abs_diff": diff.mean().item(),
        "top1_agreement": agree.item(),
        "tokens": int(reference.shape[0] * reference.shape[1]),
    }


def check_configs_match(hf_path: str | Path, megatron_path: str | Path):
    """Both configs, after raising ValueError naming every architecture field that differs."""
    hf_cfg = model_config_from_hf(HFReader(hf_path).config)
    ckpt_cfg = layout.load_model_config(megatron_path)
    diffs = architecture_mismatches(ckpt_cfg, hf_cfg, ignore=("mtp_num_layers",))  # main logits only
    if diffs:
        raise InputError(f"{megatron_path} and {hf_path}/config.json describe different models: " + "; ".join(diffs))
    return hf_cfg, ckpt_cfg


def verify(hf_path: str | Path, megatron_path: str | Path, *, batch: int = 2, seq_len: int = 32, seed: int = 0,
           tp: int = 1, pp: int = 1, ep: int = 1, etp: int = 1) -> Optional[dict]:
    """Run both models on the same tokens; the parity dict on rank 0, None on other ranks."""
    _, cfg = check_configs_match(hf_path, megatron_path)
    tokens = random_tokens(cfg.vocab_size, batch, seq_len, seed)
    dims = setup(cfg, tp, pp, ep, etp)
    chunk = build_chunk(cfg, dims, "fp32")
    load_model(chunk, latest_iteration_dir(megatron_path))
    logits = _to_rank0(megatron_logits(chunk, tokens, cfg.vocab_size), tokens.shape, cfg.vocab_size)
    del chunk
    result = compare(hf_logits(hf_path, tokens), logits) if rank() == 0 else None
    barrier()
    return result


def _to_rank0(logits: Optional[torch.Tensor], shape, vocab: int) -> Optional[torch.Tensor]:
    """Bring the last stage's logits to global rank 0 (a no-op when rank 0 is on the last stage)."""
    from megatron.core import parallel_state as ps

    if not dist.is_initialized() or dist.get_world_size() == 1:
        return logits
    box = [dist.get_process_group_ranks(ps.get_pipeline_model_parallel_group())[-1]]
    dist.broadcast_object_list(box, src=0)  # rank 0's last-stage peer sends; everyone agrees on it
    source = box[0]
    if source == 0:
        return logits
    where = device()
    if rank() == source:
        dist.send(logits.to(where).contiguous(), dst=0)  # NCCL sends device tensors only
    if rank() == 0:
        buf = torch.empty(*shape, vocab, device=where)
        dist.recv(buf, src=source)
        return buf.cpu()
    return None
