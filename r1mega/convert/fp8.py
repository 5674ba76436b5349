"""DeepSeek-style FP8 weights: float8_e4m3fn values with one fp32 scale per 128x128 block.

DeepSeek-V3/R1 checkpoints store every linear weight ``W`` of shape ``[rows, cols]`` as
``W_q = fp8(W / s)`` plus ``weight_scale_inv`` of shape ``[ceil(rows/128), ceil(cols/128)]``
holding ``s`` for each block (the name says "inverse" because it multiplies on dequant):

    W[i, j] ~= W_q[i, j] * weight_scale_inv[i // 128, j // 128]

``s = amax(|W_block|) / 448`` maps each block's largest magnitude onto e4m3's largest finite
value (448), so no block saturates. Edge blocks are partial; all-zero blocks get ``s = 1``.
Both directions compute in fp32 on whatever device the tensor is on (CPU included).
"""

from __future__ import annotations

import math

import torch

BLOCK = 128
E4M3_MAX = 448.0
SCALE_SUFFIX = "_scale_inv"
"""HF companion of ``x.weight`` is ``x.weight_scale_inv``."""


def _blocks(t: torch.Tensor, block: int) -> tuple[torch.Tensor, int, int]:
    """``t`` zero-padded to whole blocks, viewed as ``[rb, block, cb, block]``."""
    rows, cols = t.shape
    rb, cb = math.ceil(rows / block), math.ceil(cols / block)
    padded = torch.zeros(rb * block, cb * block, dtype=t.dtype, device=t.device)
    padded[:rows, :cols] = t
    return padded.view(rb, block, cb, block), rb, cb


def quantize_blockwise(weight: torch.Tensor, block: int = BLOCK) -> tuple[torch.Tensor, torch.Tensor]:
    """``(weight_fp8 [rows, cols] e4m3, scale_inv [rb, cb] fp32)`` for a 2-D weight."""
    if weight.dim() != 2:
        raise ValueError(f"FP8 block quantization needs a 2-D weight, got shape {tuple(weight.shape)}")
    rows, cols = weight.shape
    blocks, rb, cb = _blocks(weight.float(), block)
    amax = blocks.abs().amax(dim=(1, 3))
    scale = torch.where(amax > 0, amax / E4M3_MAX, torch.ones_like(amax))
    q = (blocks / scale[:, None, :, None]).clamp(-E4M3_MAX, E4M3_MAX).to(torch.float8_e4m3fn)
    return q.view(rb * block, cb * block)[:rows, :cols].contiguous(), scale.contiguous()


def dequantize_blockwise(weight: torch.Tensor, scale_inv: torch.Tensor, dtype=torch.float32,
                         block: int = BLOCK) -> torch.Tensor:
    """The ``dtype`` weight of an e4m3 ``weight`` and its per-block ``scale_inv``."""
    rows, cols = weight.shape
    rb, cb = math.ceil(rows / block), math.ceil(cols / block)
    if tuple(scale_inv.shape) != (rb, cb):
        raise ValueError(
            f"weight_scale_inv has shape {tuple(scale_inv.shape)}, expected {(rb, cb)} for a "
            f"{rows}x{cols} weight in {block}x{block} blocks"
        )
    blocks, _, _ = _blocks(weight.float(), block)
    out = blocks * scale_inv.float()[:, None, :, None]
    return out.view(rb * block, cb * block)[:rows, :cols].to(dtype).contiguous()


def is_fp8(t: torch.Tensor) -> bool:
    return t.dtype in (torch.float8_e4m3fn, torch.float8_e5m2)
