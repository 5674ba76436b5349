"""Where an entry lives on a rank, and how its full tensor is cut into (or glued from) shards.

:class:`RankLayout` is one rank's view of one ``GPTModel`` chunk: which global layers it
holds (``TransformerLayer.layer_number`` is global and 1-based, so this is read from the
model and is right for uneven and virtual pipelines too), whether it holds the embedding or
the head, and its tensor-, expert-tensor- and expert-parallel coordinates.

:func:`local_name` turns an entry into this rank's parameter name, or ``None`` when another
rank owns it. :func:`shard` / :func:`unshard` implement the TP split kinds of
:mod:`r1mega.convert.mappings.base`; ``unshard(shard(t, k, r, n) for r) == t`` bit-exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Optional, Sequence

import torch
import torch.nn.functional as F

from r1mega.convert.mappings.base import Entry


@dataclass(frozen=True)
class RankLayout:
    """One model chunk on one rank (see module docstring)."""

    layers: dict = field(default_factory=dict)
    """global layer id -> local index in ``decoder.layers``."""
    first_stage: bool = True
    last_stage: bool = True
    has_mtp: bool = False
    tp_rank: int = 0
    tp_size: int = 1
    etp_rank: int = 0
    etp_size: int = 1
    ep_rank: int = 0
    ep_size: int = 1
    num_local_experts: int = 0

    def tp_coords(self, entry: Entry) -> tuple[int, int]:
        """(rank, size) of the tensor-parallel group this entry is split over."""
        return (self.etp_rank, self.etp_size) if entry.is_expert else (self.tp_rank, self.tp_size)

    def local_expert(self, expert: int) -> Optional[int]:
        first = self.ep_rank * self.num_local_experts
        return expert - first if first <= expert < first + self.num_local_experts else None

    def global_expert(self, local: int, ep_rank: Optional[int] = None) -> int:
        return (self.ep_rank if ep_rank is None else ep_rank) * self.num_local_experts + local


def rank_layout(chunk, num_experts: Optional[int] = None) -> RankLayout:
    """The layout of ``chunk`` (an unwrapped ``GPTModel``) on this rank; groups must exist."""
    from megatron.core import parallel_state as ps

    layers = {}
    decoder = getattr(chunk, "decoder", None)
    if decoder is not None:
        layers = {layer.layer_number - 1: i for i, layer in enumerate(decoder.layers)}
    ep = ps.get_expert_model_parallel_world_size()
    return RankLayout(
        layers=layers,
        first_stage=bool(chunk.pre_process),
        last_stage=bool(chunk.post_process),
        has_mtp=bool(getattr(chunk, "mtp_process", False)),
        tp_rank=ps.get_tensor_model_parallel_rank(),
        tp_size=ps.get_tensor_model_parallel_world_size(),
        etp_rank=ps.get_expert_tensor_parallel_rank(),
        etp_size=ps.get_expert_tensor_parallel_world_size(),
        ep_rank=ps.get_expert_model_parallel_rank(),
        ep_size=ep,
        num_local_experts=(num_experts or 0) // ep,
    )


def local_name(entry: Entry, layout: RankLayout) -> Optional[str]:
    """This rank's parameter name for ``entry``, or None when the entry lives elsewhere."""
    if entry.owner == "first" and not layout.first_stage:
        return None
    if entry.owner == "last" and not layout.last_stage:
        return None
    if entry.megatron.startswith("mtp.") and not layout.has_mtp:
        return None
    local_layer = None
    if entry.owner == "layer":
        if entry.layer not in layout.layers:
            return None
        local_layer = layout.layers[entry.layer]
    local_expert = None
    if entry.is_expert:
        local_expert = layout.local_expert(entry.expert)
        if local_expert is None:
            return None
    return entry.name(layer=local_layer, expert=local_expert)


def unwrap_chunks(chunks) -> list:
    """A list of bare ``GPTModel`` chunks from one model or a list, peeling DDP/Float16Module
    wrappers (``.module``) so parameter names match the mapping."""
    chunks = list(chunks) if isinstance(chunks, (list, tuple)) else [chunks]
    out = []
    for c in chunks:
        while not hasattr(c, "decoder") and hasattr(c, "module"):
            c = c.module
        out.append(c)
    return out


def rank_entries(chunks, cfg, opts=None) -> Iterator[tuple[int, str, Entry]]:
    """``(chunk index, local parameter name, entry)`` for every entry this rank holds.

    The per-rank view of :func:`r1mega.convert.mappings.entries`: what a weight loader or a
    custom gather walks. ``opts`` defaults to the options matching how the chunks were built.
    """
    from r1mega.convert.load_hf import mapping_options
    from r1mega.convert.mappings import entries

    chunks = unwrap_chunks(chunks)
    table = entries(cfg, opts or mapping_options(cfg, chunks))
    for i, chunk in enumerate(chunks):
        layout = rank_layout(chunk, cfg.num_experts)
        names = set(chunk.state_dict(keep_vars=True))
        for entry in table:
            name = local_name(entry, layout)
            if name is not None and name in names:
                yield i, name, entry


def shard(full: torch.Tensor, kind: str, rank: int, size: int, rows: Optional[int] = None) -> torch.Tensor:
    """This rank's piece of ``full``. ``rows``: the TP-padded vocabulary (``vocab`` only)."""
    if kind == "replicated" or (size == 1 and kind != "vocab"):
        return full
    if kind == "vocab":
        full = pad_rows(full, rows if rows is not None else full.shape[0])
        return torch.chunk(full, size, dim=0)[rank]
    if kind == "column":
        return _even_chunks(full, size, 0)[rank]
    if kind == "row":
        return _even_chunks(full, size, 1)[rank]
    if kind == "gate_up":
        gate, up = torch.chunk(full, 2, dim=0)
        return torch.cat([_even_chunks(gate, size, 0)[rank], _even_chunks(up, size, 0)[rank]], dim=0)
    raise ValueError(f"unknown TP split kind {kind!r}")


def unshard(pieces: Sequence[torch.Tensor], kind: str, rows: Optional[int] = None) -> torch.Tensor:
    """Glue the pieces of all ranks (in rank order). ``rows``: drop vocabulary padding beyond it."""
    if kind == "replicated" or (len(pieces) == 1 and kind != "vocab"):
        return pieces[0]
    if kind == "vocab" and len(pieces) == 1:
        return pieces[0][:rows] if rows is not None else pieces[0]
    if kind in ("column", "vocab"):
        full = torch.cat(list(pieces), dim=0)
        return full[:rows] if kind == "vocab" and rows is not None else full
    if kind == "row":
        return torch.cat(list(pieces), dim=1)
    if kind == "gate_up":
        halves = [torch.chunk(p, 2, dim=0) for p in pieces]
        return torch.cat([torch.cat([g for g, _ in halves]), torch.cat([u for _, u in halves])], dim=0)
    raise ValueError(f"unknown TP split kind {kind!r}")


def pad_rows(t: torch.Tensor, rows: int) -> torch.Tensor:
    """Zero rows appended up to ``rows`` (Megatron's padded vocabulary)."""
    if rows < t.shape[0]:
        raise ValueError(f"cannot pad {tuple(t.shape)} down to {rows} rows")
    return t if rows == t.shape[0] else F.pad(t, (0, 0) * (t.dim() - 1) + (0, rows - t.shape[0]))


def global_shape(local: tuple, kind: str, size: int) -> tuple:
    """Full shape of a tensor whose TP piece has shape ``local``."""
    if kind in ("column", "vocab", "gate_up"):
        return (local[0] * size, *local[1:])
    if kind == "row":
        return (local[0], local[1] * size, *local[2:])
    return tuple(local)


def _even_chunks(t: torch.Tensor, size: int, dim: int):
    if t.shape[dim] % size:
        raise ValueError(f"dimension {dim} of shape {tuple(t.shape)} does not split into {size} TP shards")
    return torch.chunk(t, size, dim=dim)
