"""Core attention for the local (non-Transformer-Engine) layer spec.

Megatron-Core's local ``DotProductAttention`` assumes the key and value head sizes are both
``kv_channels``. Multi-head Latent Attention breaks that assumption (DeepSeek-V3: keys are
128 "nope" + 64 rope dims = 192, values 128), and MLA passes ``k_channels``/``v_channels`` that
the local module does not accept. This module is the local spec's core attention for every
model r1mega builds: it takes any K and V head size, runs ``scaled_dot_product_attention``
in fp32 softmax, and understands packed sequences (``PackedSeqParams`` with ``cu_seqlens_q``)
by building a block-diagonal causal mask, so the same data path serves CPU and TE runs.

Tensor layout follows Megatron: query ``[sq, b, heads, dk]`` (or ``[t, heads, dk]`` for packed
``thd`` batches, where Megatron has squeezed the batch dimension), key ``[sk, b, kv_heads, dk]``,
value ``[sk, b, kv_heads, dv]``; output ``[sq, b, heads * dv]`` for this TP rank's heads.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from megatron.core.transformer.enums import AttnMaskType
from megatron.core.transformer.module import MegatronModule
from megatron.core.transformer.transformer_config import TransformerConfig


def packed_causal_mask(cu_seqlens: torch.Tensor, total: int) -> torch.Tensor:
    """Boolean ``[total, total]`` mask, True where attention is allowed: causal within each
    packed document, nothing across documents. ``cu_seqlens`` are cumulative starts (0..total)."""
    doc = torch.zeros(total, dtype=torch.long, device=cu_seqlens.device)
    doc[cu_seqlens[1:-1].long()] = 1
    doc = doc.cumsum(0)
    same_doc = doc[:, None] == doc[None, :]
    causal = torch.ones(total, total, dtype=torch.bool, device=cu_seqlens.device).tril()
    return same_doc & causal


class SDPACoreAttention(MegatronModule):
    """Causal softmax attention with independent key/value head sizes (see module doc)."""

    def __init__(
        self,
        config: TransformerConfig,
        layer_number: int,
        attn_mask_type: AttnMaskType,
        attention_type: str,
        attention_dropout: Optional[float] = None,
        softmax_scale: Optional[float] = None,
        k_channels: Optional[int] = None,
        v_channels: Optional[int] = None,
        cp_comm_type: Optional[str] = None,
        pg_collection=None,
    ):
        super().__init__(config=config)
        if config.context_parallel_size != 1:
            raise ValueError("context parallelism needs the Transformer Engine spec (model.spec=te)")
        self.attn_mask_type = attn_mask_type
        k_channels = k_channels or config.kv_channels
        self.softmax_scale = softmax_scale if softmax_scale is not None else 1.0 / math.sqrt(k_channels)
        self.dropout_p = config.attention_dropout if attention_dropout is None else attention_dropout

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attention_mask: Optional[torch.Tensor],
        attn_mask_type: Optional[AttnMaskType] = None,
        attention_bias: Optional[torch.Tensor] = None,
        packed_seq_params=None,
    ) -> torch.Tensor:
        if query.dim() == 3:  # packed 'thd' layout: [t, heads, d], batch squeezed by Megatron
            query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
        sq, b, heads, _ = query.shape
        sk, kv_heads = key.shape[0], key.shape[2]
        mask = self._mask(sq, sk, attention_mask, packed_seq_params, query.device)
        dropout = self.dropout_p if self.training else 0.0
        if sq == 1 and mask is None and not dropout and query.device.type == "cpu":
            return self._one_query(query, key, value)
        # [s, b, h, d] -> [b, h, s, d]
        q, k, v = (t.permute(1, 2, 0, 3) for t in (query, key, value))
        if kv_heads != heads:  # grouped-query attention
            rep = heads // kv_heads
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
        if mask is None and sq != sk:
            # Decoding with a KV cache: the sq new queries are the *last* sq positions, so
            # causality is aligned bottom-right (SDPA's is_causal aligns top-left).
            mask = torch.ones(sq, sk, dtype=torch.bool, device=query.device).tril(sk - sq)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=dropout, is_causal=mask is None, scale=self.softmax_scale
        )
        # [b, h, s, dv] -> [s, b, h * dv]
        return out.permute(2, 0, 1, 3).reshape(sq, b, heads * v.shape[-1])

    def _one_query(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """Attention of one new position per sequence over all cached ones (KV-cache decoding).

        The cache is laid out ``[sk, b, kv_heads, d]``; SDPA wants ``[b, h, sk, d]`` and copies
        the whole cache into that layout on every call. Two einsums over the cache as it lies
        read it once: on CPU this halves the attention time of a decode step (deepseek_v3_tiny,
        256 sequences, 130 cached positions: 18 ms -> 9 ms per layer on one core). Grouped
        query heads are a ``[kv_heads, rep]`` split of the query heads, so no ``repeat``."""
        _, b, heads, dk = query.shape
        kv_heads, dv = value.shape[2], value.shape[3]
        q = query[0].reshape(b, kv_heads, heads // kv_heads, dk)
        scores = torch.einsum("bgrd,sbgd->bgrs", q.float(), key.float()) * self.softmax_scale
        probs = scores.softmax(-1).to(value.dtype)
        out = torch.einsum("bgrs,sbgd->bgrd", probs, value)
        return out.reshape(1, b, heads * dv)

    @staticmethod
    def _mask(sq, sk, attention_mask, packed_seq_params, device):
        """None means plain causal (the fast path); otherwise a boolean 'may attend' mask."""
        allowed = None
        if packed_seq_params is not None and packed_seq_params.cu_seqlens_q is not None:
            allowed = packed_causal_mask(packed_seq_params.cu_seqlens_q, sq)
        if attention_mask is not None:
            # Megatron convention: True marks positions that must NOT be attended.
            extra = ~attention_mask.bool()
            causal = torch.ones(sq, sk, dtype=torch.bool, device=device).tril(sk - sq)
            allowed = extra & causal if allowed is None else extra & allowed
        return allowed
