"""Logits of the first multi-token-prediction depth, from transformers and from Megatron.

Reference: transformers' own DeepSeek MTP implementation (``transformers.modeling_layers.
MtpModel``, the drafter behind ``generate(use_mtp=True)``), run in float64. It predicts token
``i + 2`` at position ``i`` from the main model's final (normed) hidden state at ``i`` and the
embedding of token ``i + 1``, at the positions of the shifted tokens. Megatron embeds token 0
after the last one (``roll_tensor`` fills the vacated slot with 0), so the reference does too;
rotary attention depends on position differences only, so Megatron's unshifted positions give
the same result.

``MtpModel.from_pretrained`` finds the MTP tensors through the main model's
``_keys_to_ignore_on_load_unexpected``, which for DeepSeek-V3 names layer 61 (the full model's
MTP layer); for a tiny model it is pointed at ``model.layers.{num_hidden_layers}``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
import torch.distributed as dist

from r1mega.convert.verify import stage_inputs


def shifted_tokens(tokens: torch.Tensor) -> torch.Tensor:
    """Tokens ``i + 1`` at position ``i``, token 0 after the last (Megatron's roll)."""
    return torch.cat([tokens[:, 1:], torch.zeros_like(tokens[:, :1])], dim=1)


@torch.no_grad()
def hf_mtp_logits(hf_dir: str | Path, tokens: torch.Tensor, swap_eh_proj_halves: bool = False) -> torch.Tensor:
    """``[batch, seq, vocab]`` fp32 logits of MTP depth 1 by transformers in float64.
    ``swap_eh_proj_halves``: a deliberately wrong model (hidden and embedding inputs swapped)."""
    from transformers import AutoModelForCausalLM
    from transformers.modeling_layers import MtpModel

    main = AutoModelForCausalLM.from_pretrained(str(hf_dir), dtype=torch.float64,
                                                experts_implementation="eager").eval()
    main._keys_to_ignore_on_load_unexpected = [rf"model\.layers\.{main.config.num_hidden_layers}\..*"]
    mtp = MtpModel.from_pretrained(main).eval()
    if swap_eh_proj_halves:
        w = mtp.layers[0].eh_proj.weight
        w.copy_(torch.cat(w.chunk(2, dim=1)[::-1], dim=1))
    batch, seq = tokens.shape
    hidden = main.model(input_ids=tokens).last_hidden_state
    positions = torch.arange(1, seq + 1).expand(batch, seq)
    out = mtp.forward_layer(0, hidden, positions, None, input_ids=shifted_tokens(tokens))
    return mtp._project_to_logits(out).float()


@torch.no_grad()
def megatron_mtp_logits(chunk, tokens: torch.Tensor, vocab_size: int) -> Optional[torch.Tensor]:
    """``[batch, seq, vocab]`` logits of MTP depth 1 on last-stage ranks (None elsewhere), at
    any layout: the pipeline is driven as in ``r1mega.convert.verify.megatron_logits``, the
    forward gets labels (so Megatron runs its MTP block), and the MTP block's output is sent
    through the shared output layer."""
    from megatron.core import parallel_state as ps

    tokens, positions = stage_inputs(chunk, tokens)
    got = {}
    hook = chunk.mtp.register_forward_hook(lambda mod, args, out: got.update(h=out)) if chunk.mtp_process else None
    out = chunk(tokens, positions, None, labels=tokens, runtime_gather_output=True)
    if hook is not None:
        hook.remove()
    if not chunk.post_process:
        dist.send(out.contiguous(), dst=ps.get_pipeline_model_parallel_next_rank())
        return None
    depth1 = got["h"].chunk(1 + chunk.config.mtp_num_layers, dim=0)[1]
    logits, _ = chunk.output_layer(depth1, runtime_gather_output=True)
    return logits.transpose(0, 1)[..., :vocab_size].float().cpu()
