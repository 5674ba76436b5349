"""The mapping vocabulary: merges, TP splits, and that each family's table covers its model.

Merges and splits are checked on small hand-built tensors whose expected layout is written
out explicitly (Megatron's interleaved QKV, the per-shard gate/up concatenation, DeepSeek's
rope pair order), then as exact round trips on random tensors.
"""

from __future__ import annotations

import pytest
import torch

from r1mega.convert.mappings import MappingOptions, entries, model_config_from_hf
from r1mega.convert.mappings.base import FusedQKV, GateUp, RopeInterleave
from r1mega.convert.sharding import RankLayout, local_name, shard, unshard
from tests.convert.tiny_models import FAMILIES, hf_config


def rows(*labels):
    """A [n, 1] tensor whose rows carry the given labels (so layouts can be read off)."""
    return torch.tensor([[float(x)] for x in labels])


def test_fused_qkv_interleaves_query_groups():
    # 4 heads in 2 groups, head_dim 1: Megatron wants [q0 q1 k0 v0 | q2 q3 k1 v1].
    qkv = FusedQKV(heads=4, groups=2, head_dim=1)
    fused = qkv.to_megatron([rows(0, 1, 2, 3), rows(10, 11), rows(20, 21)])
    assert fused.flatten().tolist() == [0, 1, 10, 20, 2, 3, 11, 21]
    # a column split over TP=2 hands each rank whole groups
    assert shard(fused, "column", 1, 2).flatten().tolist() == [2, 3, 11, 21]
    bias = qkv.to_megatron([torch.arange(4.0), torch.tensor([10.0, 11]), torch.tensor([20.0, 21])])
    assert bias.tolist() == [0, 1, 10, 20, 2, 3, 11, 21]


def test_rope_interleave_reorders_pairs_within_each_block():
    # block of 6 rows: 2 "nope" rows then 4 rope rows [a0 a1 b0 b1] -> [a0 b0 a1 b1]
    perm = RopeInterleave(block=6, rope_start=2, rope_dim=4)
    out = perm.to_megatron([rows(0, 1, 2, 3, 4, 5, 10, 11, 12, 13, 14, 15)])
    assert out.flatten().tolist() == [0, 1, 2, 4, 3, 5, 10, 11, 12, 14, 13, 15]


def test_gate_up_shards_each_half():
    full = GateUp().to_megatron([rows(0, 1, 2, 3), rows(10, 11, 12, 13)])
    assert shard(full, "gate_up", 0, 2).flatten().tolist() == [0, 1, 10, 11]
    assert shard(full, "gate_up", 1, 2).flatten().tolist() == [2, 3, 12, 13]


@pytest.mark.parametrize("merge,shapes", [
    (FusedQKV(8, 2, 4), [(32, 16), (8, 16), (8, 16)]),
    (FusedQKV(8, 2, 4), [(32,), (8,), (8,)]),
    (GateUp(), [(12, 5), (12, 5)]),
    (RopeInterleave(block=24, rope_start=16, rope_dim=8), [(96, 7)]),
])
def test_merges_round_trip_exactly(merge, shapes):
    parts = [torch.randn(s) for s in shapes]
    fused = merge.to_megatron(parts)
    assert tuple(fused.shape) == merge.megatron_shape(shapes)
    for a, b in zip(merge.to_hf(fused), parts):
        assert torch.equal(a, b)


@pytest.mark.parametrize("kind", ["replicated", "column", "row", "vocab", "gate_up"])
@pytest.mark.parametrize("size", [1, 2, 4])
def test_shard_unshard_round_trip(kind, size):
    full = torch.randn(300 if kind == "vocab" else 16, 8)
    rows_padded = 512 if kind == "vocab" else None
    pieces = [shard(full, kind, r, size, rows_padded) for r in range(size)]
    if kind == "vocab":
        assert all(p.shape[0] == 512 // size for p in pieces)
        assert torch.count_nonzero(torch.cat(pieces)[300:]) == 0  # padding rows are zero
    assert torch.equal(unshard(pieces, kind, 300 if kind == "vocab" else None), full)


def test_local_name_maps_global_ids_to_rank_local_ones():
    cfg = model_config_from_hf(hf_config("deepseek_v3").to_dict())
    table = entries(cfg)
    fc1 = next(e for e in table if e.layer == 1 and e.expert == 6 and "linear_fc1" in e.megatron)
    # second pipeline stage holds global layer 1 as local layer 0; EP rank 1 holds experts 4..7
    lay = RankLayout(layers={1: 0}, first_stage=False, ep_rank=1, ep_size=2, num_local_experts=4)
    assert local_name(fc1, lay) == "decoder.layers.0.mlp.experts.local_experts.2.linear_fc1.weight"
    assert local_name(fc1, RankLayout(layers={1: 0}, ep_rank=0, ep_size=2, num_local_experts=4)) is None
    emb = table[0]
    assert local_name(emb, lay) is None and local_name(emb, RankLayout()) == "embedding.word_embeddings.weight"


def test_te_names_fuse_norms_and_group_experts():
    cfg = model_config_from_hf(hf_config("deepseek_v3").to_dict())
    te = {e.global_name: e for e in entries(cfg, MappingOptions(spec="te", grouped_gemm=True))}
    assert "decoder.layers.0.self_attention.linear_q_up_proj.layer_norm_weight" in te
    assert "decoder.layers.0.self_attention.linear_kv_up_proj.layer_norm_weight" in te
    assert "decoder.layers.0.mlp.linear_fc1.layer_norm_weight" in te  # dense layer: fused pre-MLP norm
    assert "decoder.layers.1.pre_mlp_layernorm.weight" in te  # MoE layer keeps its own norm
    assert "decoder.layers.1.mlp.experts.linear_fc2.weight7" in te
    assert te["decoder.layers.0.self_attention.linear_kv_down_proj.weight"].tp == "replicated"
    dense = model_config_from_hf(hf_config("qwen2").to_dict())
    names = {e.global_name for e in entries(dense, MappingOptions(spec="te"))}
    assert {"decoder.layers.0.self_attention.linear_qkv.layer_norm_weight",
            "decoder.layers.0.mlp.linear_fc1.layer_norm_weight"} <= names


def test_local_grouped_gemm_is_refused():
    with pytest.raises(ValueError, match="moe_grouped_gemm"):
        MappingOptions(spec="local", grouped_gemm=True)


@pytest.fixture(scope="module")
def one_rank():
    from r1mega.parallel.config import ParallelConfig
    from r1mega.parallel.dims import ParallelDims

    dims = ParallelDims.resolve(ParallelConfig(), 1)
    dims.build()
    return dims


@pytest.mark.parametrize("family", FAMILIES)
def test_table_covers_the_megatron_model_exactly(family, one_rank):
    """Every parameter of the built GPTModel has exactly one entry, with the HF shapes merging
    to the parameter's shape (the output layer is absent when embeddings are tied)."""
    from transformers import AutoModelForCausalLM

    from r1mega.convert.megatron_io import build_chunk
    from r1mega.convert.sharding import rank_entries

    hf_cfg = hf_config(family)
    cfg = model_config_from_hf(hf_cfg.to_dict())
    chunk = build_chunk(cfg, one_rank)
    hf_shapes = {k: tuple(v.shape) for k, v in AutoModelForCausalLM.from_config(hf_cfg).state_dict().items()}
    hf_shapes.update({k: tuple(v.shape) for k, v in _per_expert_shapes(hf_cfg).items()})
    state = {k: v for k, v in chunk.state_dict().items() if not k.endswith("_extra_state")}
    mapped = {}
    for _, name, e in rank_entries(chunk, cfg):
        assert name not in mapped, name
        mapped[name] = e
        merged = e.merge.megatron_shape([hf_shapes[n] for n in e.hf])
        if e.tp == "vocab":
            merged = (state[name].shape[0], *merged[1:])  # Megatron pads the vocabulary
        assert tuple(state[name].shape) == merged, name
    assert set(mapped) == set(state)
    wrapped = torch.nn.Module()
    wrapped.module = chunk  # as DDP / Float16Module wrap it: names are resolved on the bare model
    assert [n for _, n, _ in rank_entries(wrapped, cfg)] == list(mapped)


def _per_expert_shapes(hf_cfg) -> dict:
    """On-disk (per-expert) HF names; transformers 5 fuses experts in memory."""
    experts = getattr(hf_cfg, "n_routed_experts", None) or getattr(hf_cfg, "num_experts", None)
    if not experts:
        return {}
    out = {}
    for layer in range(getattr(hf_cfg, "first_k_dense_replace", 0), hf_cfg.num_hidden_layers):
        for e in range(experts):
            p = f"model.layers.{layer}.mlp.experts.{e}"
            inter, hidden = hf_cfg.moe_intermediate_size, hf_cfg.hidden_size
            out[f"{p}.gate_proj.weight"] = torch.empty(inter, hidden)
            out[f"{p}.up_proj.weight"] = torch.empty(inter, hidden)
            out[f"{p}.down_proj.weight"] = torch.empty(hidden, inter)
    return out


@pytest.mark.parametrize("family", ["deepseek_v3", "qwen3_moe"])  # per-layer keys (dense-only models stack them)
def test_local_checkpoint_norm_keys_are_the_te_names(one_rank, family):
    """The local spec checkpoints its norms under the TE spec's names (MLA latent norms fused
    into the up projections; a standard-attention MoE layer's pre-MLP norm kept separate, as TE
    keeps it), so a checkpoint written on CPU (local spec) loads into a TE model and vice versa."""
    from r1mega.convert.megatron_io import build_chunk

    cfg = model_config_from_hf(hf_config(family).to_dict())
    keys = {v.key for v in build_chunk(cfg, one_rank).sharded_state_dict().values() if hasattr(v, "key")}
    te = {e.global_name for e in entries(cfg, MappingOptions(spec="te")) if "norm" in e.global_name}
    assert te <= keys
