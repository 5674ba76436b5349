"""The vocabulary every family mapping is written in: entries, merges and TP split kinds.

A checkpoint conversion is a table. Each :class:`Entry` says: *this* Megatron-Core tensor is
built from *these* Hugging Face tensors by *this* merge, and is split across tensor-parallel
ranks in *this* way. Everything else (reading safetensors, sharding, gathering, writing
checkpoints, streaming to vLLM) is generic code that walks the table, so a family is only a
list of entries plus the translation of its ``config.json``.

Names
    ``Entry.megatron`` is a template with ``{layer}`` and ``{expert}`` placeholders. The
    entry also records the *global* layer and expert ids, so one entry serves every rank:
    :meth:`Entry.name` fills in global ids (what ``dist_checkpointing`` and the HF side use);
    :meth:`Entry.name` with a rank's local ids gives the parameter name inside that rank's
    ``GPTModel`` chunk (pipeline stages number their layers from 0, expert-parallel ranks
    number their experts from 0).

Merges (:class:`Merge`) turn the list of HF tensors into the one Megatron tensor and back:
    * :class:`Copy` -- one to one;
    * :class:`GateUp` -- ``linear_fc1 = cat[gate_proj, up_proj]`` (SwiGLU);
    * :class:`FusedQKV` -- Megatron's ``linear_qkv`` interleaves per query group
      ``[q_g (heads/groups rows of head_dim), k_g, v_g]`` for g in groups; weight and bias alike;
    * :class:`RopeInterleave` -- reorders the rotary rows of a projection from the
      rotate-half layout to the interleaved one (see ``mappings/deepseek_v3.py``).

TP split kinds (``Entry.tp``; implemented in :mod:`r1mega.convert.sharding`):
    ``replicated`` every rank holds the whole tensor (norms, router, TE's MLA down projections);
    ``column``     dim 0 is split (ColumnParallelLinear weight and bias);
    ``row``        dim 1 is split (RowParallelLinear weight);
    ``vocab``      dim 0 is split after padding rows to the TP-padded vocabulary;
    ``gate_up``    the gate and up halves of dim 0 are each split, and each rank holds
                   ``cat[gate_shard, up_shard]`` (not a contiguous chunk of the full tensor).
Routed-expert entries (``expert is not None``) split over the expert-TP group and are
distributed over the expert-parallel group; all other entries split over the dense TP group.

Owners (``Entry.owner``) say which pipeline stage holds the tensor: ``first`` (the input
embedding), ``last`` (final norm, output layer, MTP), or ``layer`` (the stage holding
``Entry.layer``).

Copies. One Megatron tensor may appear in several entries: ``tied`` entries fill a second
Megatron copy of a tensor on import (never exported); ``export_copy`` entries write a second
HF copy of it on export (never imported). Every other entry names a distinct Megatron tensor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch

TP_KINDS = ("replicated", "column", "row", "vocab", "gate_up")
OWNERS = ("first", "layer", "last")


class Merge:
    """How the HF tensors of an entry combine into the Megatron tensor (and split back)."""

    def to_megatron(self, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def to_hf(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError

    def megatron_shape(self, shapes: Sequence[tuple]) -> tuple:
        """Shape of the merged tensor given the HF shapes (for validation before reading)."""
        raise NotImplementedError


@dataclass(frozen=True)
class Copy(Merge):
    def to_megatron(self, tensors):
        (t,) = tensors
        return t

    def to_hf(self, tensor):
        return [tensor]

    def megatron_shape(self, shapes):
        return tuple(shapes[0])


@dataclass(frozen=True)
class GateUp(Merge):
    """``linear_fc1.weight = cat[gate_proj.weight, up_proj.weight]`` along dim 0."""

    def to_megatron(self, tensors):
        gate, up = tensors
        return torch.cat([gate, up], dim=0)

    def to_hf(self, tensor):
        gate, up = torch.chunk(tensor, 2, dim=0)
        return [gate.contiguous(), up.contiguous()]

    def megatron_shape(self, shapes):
        return (shapes[0][0] + shapes[1][0], *shapes[0][1:])


@dataclass(frozen=True)
class FusedQKV(Merge):
    """Megatron's per-query-group interleaved QKV (weight ``[rows, hidden]`` or bias ``[rows]``)."""

    heads: int
    groups: int
    head_dim: int

    def _split_sizes(self):
        return [self.heads // self.groups * self.head_dim, self.head_dim, self.head_dim]

    def to_megatron(self, tensors):
        q, k, v = tensors
        tail = q.shape[1:]
        q = q.reshape(self.groups, -1, *tail)
        k = k.reshape(self.groups, -1, *tail)
        v = v.reshape(self.groups, -1, *tail)
        return torch.cat([q, k, v], dim=1).reshape(-1, *tail)

    def to_hf(self, tensor):
        tail = tensor.shape[1:]
        grouped = tensor.reshape(self.groups, -1, *tail)
        q, k, v = torch.split(grouped, self._split_sizes(), dim=1)
        return [x.reshape(-1, *tail).contiguous() for x in (q, k, v)]

    def megatron_shape(self, shapes):
        return (sum(s[0] for s in shapes), *shapes[0][1:])


@dataclass(frozen=True)
class RopeInterleave(Merge):
    """Rotary rows ``[a_0..a_{d/2-1}, b_0..b_{d/2-1}]`` (rotate-half pairs ``(a_i, b_i)``) ->
    ``[a_0, b_0, a_1, b_1, ...]`` (interleaved pairs), inside every block of ``block`` rows,
    for the ``rope_dim`` rows starting at ``rope_start``."""

    block: int
    rope_start: int
    rope_dim: int

    def _permute(self, tensor, interleave: bool):
        tail = tensor.shape[1:]
        blocks = tensor.reshape(-1, self.block, *tail).clone()
        rope = blocks[:, self.rope_start : self.rope_start + self.rope_dim]
        half = self.rope_dim // 2
        if interleave:
            new = torch.stack([rope[:, :half], rope[:, half:]], dim=2).reshape(rope.shape)
        else:
            new = torch.cat([rope[:, 0::2], rope[:, 1::2]], dim=1)
        blocks[:, self.rope_start : self.rope_start + self.rope_dim] = new
        return blocks.reshape(-1, *tail)

    def to_megatron(self, tensors):
        (t,) = tensors
        return self._permute(t, interleave=True)

    def to_hf(self, tensor):
        return [self._permute(tensor, interleave=False)]

    def megatron_shape(self, shapes):
        return tuple(shapes[0])


COPY = Copy()
GATE_UP = GateUp()


@dataclass(frozen=True)
class Entry:
    """One Megatron tensor and the HF tensors it is made of (see the module docstring)."""

    megatron: str
    hf: tuple[str, ...]
    merge: Merge = COPY
    tp: str = "replicated"
    owner: str = "layer"
    layer: Optional[int] = None
    expert: Optional[int] = None
    fp8: bool = False
    """Quantized to 128x128-block e4m3 in DeepSeek-style FP8 checkpoints (linear weights only)."""
    fp32: bool = False
    """Kept in float32 in HF checkpoints whatever the model dtype (the router's score bias)."""
    tied: bool = False
    """A second copy of a tensor another entry already exports (output layer of a model with
    tied embeddings, or the input embedding of the MTP stage, on the last pipeline stage):
    filled on import, never exported."""
    export_copy: bool = False
    """A copy HF stores of a tensor another entry already imports (DeepSeek's per-MTP-layer
    ``embed_tokens`` and ``shared_head.head``, which Megatron shares with the main model):
    written on export, optional on import and there only compared with the tensor it copies."""

    def __post_init__(self):
        if self.tp not in TP_KINDS:
            raise ValueError(f"{self.megatron}: tp={self.tp!r} is not one of {TP_KINDS}")
        if self.owner not in OWNERS:
            raise ValueError(f"{self.megatron}: owner={self.owner!r} is not one of {OWNERS}")

    def name(self, layer: Optional[int] = None, expert: Optional[int] = None) -> str:
        """The Megatron name with the given (local) ids; defaults to the global ids."""
        return self.megatron.format(
            layer=self.layer if layer is None else layer,
            expert=self.expert if expert is None else expert,
        )

    @property
    def global_name(self) -> str:
        return self.name()

    @property
    def is_expert(self) -> bool:
        return self.expert is not None


@dataclass(frozen=True)
class MappingOptions:
    """How the Megatron side is built: the layer spec and the expert implementation."""

    spec: str = "local"
    """'local' (Megatron-Core modules) or 'te' (Transformer Engine, norms fused into linears)."""
    grouped_gemm: bool = False
    """TE spec only: experts as ``TEGroupedMLP`` (``mlp.experts.linear_fc1.weight{i}``)."""
    include_mtp: bool = False
    """Map the multi-token-prediction layers (only when the Megatron model has them)."""

    def __post_init__(self):
        if self.spec not in ("local", "te"):
            raise ValueError(f"spec={self.spec!r} is not 'local' or 'te'")
        if self.grouped_gemm and self.spec == "local":
            raise ValueError(
                "model.moe_grouped_gemm=true with the local spec builds Megatron's legacy GroupedMLP "
                "(all local experts fused in weight1/weight2), which the converter does not map; "
                "use model.moe_grouped_gemm=false on CPU or the TE spec"
            )


@dataclass
class LayerNames:
    """Helpers that spell Megatron names for one decoder (or MTP) layer prefix."""

    prefix: str
    opts: MappingOptions = field(default_factory=MappingOptions)

    def __call__(self, suffix: str) -> str:
        return f"{self.prefix}.{suffix}"

    def expert(self, fc: str) -> str:
        """Routed-expert weight name (``fc`` is linear_fc1 or linear_fc2)."""
        if self.opts.grouped_gemm:
            return self(f"mlp.experts.{fc}.weight{{expert}}")
        return self(f"mlp.experts.local_experts.{{expert}}.{fc}.weight")


def dense_mlp_entries(
    names: LayerNames, hf: str, layer: Optional[int], owner: str, norm_hf: str, fused_norm: bool
) -> list[Entry]:
    """A dense SwiGLU MLP and its pre-norm (fused into ``linear_fc1`` in the TE spec)."""
    norm_name = "mlp.linear_fc1.layer_norm_weight" if fused_norm else "pre_mlp_layernorm.weight"
    kw = dict(layer=layer, owner=owner)
    return [
        Entry(names(norm_name), (norm_hf,), **kw),
        Entry(names("mlp.linear_fc1.weight"), (f"{hf}.gate_proj.weight", f"{hf}.up_proj.weight"),
              GATE_UP, "gate_up", fp8=True, **kw),
        Entry(names("mlp.linear_fc2.weight"), (f"{hf}.down_proj.weight",), tp="row", fp8=True, **kw),
    ]


def moe_entries(names: LayerNames, hf: str, layer: Optional[int], owner: str, num_experts: int,
                shared: bool, expert_bias: bool) -> list[Entry]:
    """Router, routed experts (global ids) and the optional shared expert of one MoE layer."""
    kw = dict(layer=layer, owner=owner)
    out = [Entry(names("mlp.router.weight"), (f"{hf}.gate.weight",), **kw)]
    if expert_bias:
        out.append(Entry(names("mlp.router.expert_bias"), (f"{hf}.gate.e_score_correction_bias",), fp32=True,
                         **kw))
    for e in range(num_experts):
        ehf = f"{hf}.experts.{e}"
        out.append(Entry(names.expert("linear_fc1"), (f"{ehf}.gate_proj.weight", f"{ehf}.up_proj.weight"),
                         GATE_UP, "gate_up", expert=e, fp8=True, **kw))
        out.append(Entry(names.expert("linear_fc2"), (f"{ehf}.down_proj.weight",), tp="row",
                         expert=e, fp8=True, **kw))
    if shared:
        shf = f"{hf}.shared_experts"
        out.append(Entry(names("mlp.shared_experts.linear_fc1.weight"),
                         (f"{shf}.gate_proj.weight", f"{shf}.up_proj.weight"), GATE_UP, "gate_up", fp8=True, **kw))
        out.append(Entry(names("mlp.shared_experts.linear_fc2.weight"), (f"{shf}.down_proj.weight",),
                         tp="row", fp8=True, **kw))
    return out


def embedding_and_head_entries(tie: bool) -> list[Entry]:
    """Input embedding, final norm and output layer (shared by every family)."""
    out = [
        Entry("embedding.word_embeddings.weight", ("model.embed_tokens.weight",), tp="vocab", owner="first"),
        Entry("decoder.final_layernorm.weight", ("model.norm.weight",), owner="last"),
    ]
    if tie:
        # With PP > 1 the last stage keeps its own copy of the (tied) embedding as the output layer.
        out.append(Entry("output_layer.weight", ("model.embed_tokens.weight",), tp="vocab", owner="last", tied=True))
    else:
        out.append(Entry("output_layer.weight", ("lm_head.weight",), tp="vocab", owner="last"))
    return out
