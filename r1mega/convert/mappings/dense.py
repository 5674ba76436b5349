"""Entries of a standard (MHA/GQA) dense decoder: what Qwen2, Qwen3 and Llama have in common
(Qwen3-MoE shares the attention entries).

Per layer ``L`` (HF prefix ``model.layers.L``, Megatron prefix ``decoder.layers.L``):

=========================================  =====================================  =========
Megatron (local spec; TE name in brackets)  Hugging Face                           TP split
=========================================  =====================================  =========
input_layernorm.weight                      input_layernorm.weight                 replicated
  [self_attention.linear_qkv.layer_norm_weight]
self_attention.linear_qkv.weight            self_attn.{q,k,v}_proj.weight (fused)  column
self_attention.linear_qkv.bias (Qwen2)      self_attn.{q,k,v}_proj.bias (fused)    column
self_attention.q_layernorm.weight (Qwen3)   self_attn.q_norm.weight                replicated
self_attention.k_layernorm.weight (Qwen3)   self_attn.k_norm.weight                replicated
self_attention.linear_proj.weight           self_attn.o_proj.weight                row
pre_mlp_layernorm.weight                    post_attention_layernorm.weight        replicated
  [mlp.linear_fc1.layer_norm_weight]
mlp.linear_fc1.weight                       mlp.{gate,up}_proj.weight (cat)        gate_up
mlp.linear_fc2.weight                       mlp.down_proj.weight                   row
=========================================  =====================================  =========

The fused QKV is interleaved per query group (``FusedQKV``), so a column split of the fused
tensor hands each TP rank whole groups -- exactly Megatron's layout. Rotary embeddings use the
rotate-half convention on both sides (HF ``rotate_half`` == Megatron ``rotary_interleaved=False``),
so no permutation is needed. Qwen3's query/key norms act on each head's ``head_dim`` values
with one weight shared by all heads, so every TP rank holds all of it.
"""

from __future__ import annotations

from r1mega.convert.mappings.base import (
    Entry,
    FusedQKV,
    LayerNames,
    MappingOptions,
    dense_mlp_entries,
    embedding_and_head_entries,
)
from r1mega.models.config import ModelConfig


def attention_entries(cfg: ModelConfig, layer: int, opts: MappingOptions) -> list[Entry]:
    names = LayerNames("decoder.layers.{layer}", opts)
    hf = f"model.layers.{layer}"
    qkv = FusedQKV(cfg.num_attention_heads, cfg.kv_heads, cfg.head_dim)
    norm = "self_attention.linear_qkv.layer_norm_weight" if opts.spec == "te" else "input_layernorm.weight"
    proj = [f"{hf}.self_attn.{p}_proj" for p in "qkv"]
    out = [
        Entry(names(norm), (f"{hf}.input_layernorm.weight",), layer=layer),
        Entry(names("self_attention.linear_qkv.weight"), tuple(f"{p}.weight" for p in proj), qkv, "column",
              layer=layer, fp8=True),
    ]
    if cfg.add_qkv_bias:
        out.append(Entry(names("self_attention.linear_qkv.bias"), tuple(f"{p}.bias" for p in proj), qkv,
                         "column", layer=layer))
    if cfg.qk_layernorm:
        out += [Entry(names(f"self_attention.{m}_layernorm.weight"), (f"{hf}.self_attn.{m}_norm.weight",), layer=layer)
                for m in "qk"]
    out.append(Entry(names("self_attention.linear_proj.weight"), (f"{hf}.self_attn.o_proj.weight",), tp="row",
                     layer=layer, fp8=True))
    return out


def dense_decoder_entries(cfg: ModelConfig, opts: MappingOptions) -> list[Entry]:
    """Every tensor of a dense GQA decoder, in checkpoint order."""
    names = LayerNames("decoder.layers.{layer}", opts)
    out = []
    for layer in range(cfg.num_layers):
        hf = f"model.layers.{layer}"
        out += attention_entries(cfg, layer, opts)
        out += dense_mlp_entries(names, f"{hf}.mlp", layer, "layer", f"{hf}.post_attention_layernorm.weight",
                                 fused_norm=opts.spec == "te")
    first, *head = embedding_and_head_entries(cfg.tie_embeddings)
    return [first, *out, *head]


def gqa_fields(hf, heads: int, hidden: int) -> dict:
    """num_query_groups / kv_channels from num_key_value_heads / head_dim."""
    kv_heads = int(hf.get("num_key_value_heads") or heads)
    head_dim = hf.get("head_dim")
    kv_channels = int(head_dim) if head_dim and int(head_dim) != hidden // heads else None
    return dict(num_query_groups=kv_heads, kv_channels=kv_channels)
