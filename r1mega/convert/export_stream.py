"""Stream a live, sharded Megatron model as Hugging Face tensors, in bounded buckets.

This is the weight path from training to serving (the vLLM bridge) and the back end of the
offline exporter. Every rank calls :func:`iter_hf_buckets` with its own model chunk(s); every
rank receives the *same* sequence of buckets, each a list of ``(hf_name, tensor)`` whose
payload is at most ``bucket_bytes`` (a single tensor larger than that travels alone).

How a tensor reaches every rank:

* **TP / expert-TP** -- the pipeline stage that owns the tensor all-gathers its shards over the
  tensor-parallel group (the expert-tensor-parallel group for routed experts) and glues them
  per the entry's split kind (:func:`~r1mega.convert.sharding.unshard`);
* **EP** -- routed experts are walked by *local* index ``i``; one all-gather over the
  expert-parallel group yields experts ``r * experts_per_rank + i`` for every EP rank ``r``;
* **PP** -- stages take turns in order; the owning stage packs each bucket into one flat byte
  buffer and broadcasts it (with a small name/shape/dtype header) over the pipeline group.

Only one entry's full tensor plus one bucket are ever materialised beyond the model shard,
so the whole model never sits on one device. Collectives run in the same order on every rank
because every rank walks the same global entry table. With ``fp8=True`` the linear weights
(``Entry.fp8``) are sent as DeepSeek-style 128x128-block e4m3 plus ``<name>_scale_inv``.
"""

from __future__ import annotations

from typing import Iterable, Iterator, Optional

import torch
import torch.distributed as dist

from r1mega.convert.fp8 import SCALE_SUFFIX, quantize_blockwise
from r1mega.convert.load_hf import mapping_options
from r1mega.convert.mappings import Entry, MappingOptions, entries
from r1mega.convert.sharding import local_name, rank_layout, unshard, unwrap_chunks
from r1mega.models.config import ModelConfig

Bucket = list[tuple[str, torch.Tensor]]


def iter_hf_tensors(chunks, cfg: ModelConfig, **kwargs) -> Iterator[tuple[str, torch.Tensor]]:
    """:func:`iter_hf_buckets`, one ``(hf_name, tensor)`` at a time."""
    for bucket in iter_hf_buckets(chunks, cfg, **kwargs):
        yield from bucket


def iter_hf_buckets(chunks, cfg: ModelConfig, *, bucket_bytes: int = 512 * 2**20, fp8: bool = False,
                    dtype: Optional[torch.dtype] = None, opts: Optional[MappingOptions] = None) -> Iterator[Bucket]:
    """Every HF tensor of the model, on every rank, ``bucket_bytes`` at a time (see module doc).

    ``chunks``: this rank's model chunk or list of chunks (wrappers with ``.module`` are peeled).
    Every rank must consume the whole iterator: stopping early leaves the others in a collective.

    Floating-point tensors are sent in ``dtype`` (default: the model's ``params_dtype``; norms
    of a bf16 Megatron model are fp32 parameters but bf16 in HF), except entries marked
    ``fp32`` (the router score bias), which stay float32 as in DeepSeek's checkpoints.
    """
    from megatron.core import parallel_state as ps

    chunks = unwrap_chunks(chunks)
    opts = opts or mapping_options(cfg, chunks)
    table = [e for e in entries(cfg, opts) if not e.tied]
    views = [(rank_layout(c, cfg.num_experts), c.state_dict(keep_vars=True)) for c in chunks]
    pp_size, pp_rank = ps.get_pipeline_model_parallel_world_size(), ps.get_pipeline_model_parallel_rank()
    stage_of = _stage_owners(views, pp_size)
    device = next(chunks[0].parameters()).device
    dtype = dtype or chunks[0].config.params_dtype
    for stage in range(pp_size):
        mine = [e for e in table if stage_of(e) == stage]
        if stage == pp_rank:
            for bucket in _buckets(_produce(mine, views, cfg, fp8, dtype), bucket_bytes):
                if pp_size > 1:
                    _broadcast_bucket(bucket, stage)
                yield bucket
            if pp_size > 1:
                _broadcast_bucket(None, stage)
        else:
            while (bucket := _receive_bucket(stage, device)) is not None:
                yield bucket


def _stage_owners(views, pp_size: int):
    """A function entry -> owning pipeline stage, agreed on by all ranks."""
    from megatron.core import parallel_state as ps

    mine = {
        "layers": sorted(g for layout, _ in views for g in layout.layers),
        "first": any(layout.first_stage for layout, _ in views),
        "last": any(layout.last_stage for layout, _ in views),
    }
    every = [mine]
    if pp_size > 1:
        every = [None] * pp_size
        dist.all_gather_object(every, mine, group=ps.get_pipeline_model_parallel_group())
    layer_stage = {g: s for s, info in enumerate(every) for g in info["layers"]}
    first = next(s for s, info in enumerate(every) if info["first"])
    last = next(s for s, info in enumerate(every) if info["last"])

    def stage_of(e: Entry) -> int:
        if e.owner == "first":
            return first
        if e.owner == "last":
            return last
        return layer_stage[e.layer]

    return stage_of


def _units(mine: list[Entry]) -> list:
    """Entries grouped for gathering: single entries, or {expert id: entry} per expert tensor."""
    units, by_key = [], {}
    for e in mine:
        if not e.is_expert:
            units.append(e)
            continue
        key = (e.layer, e.megatron)
        if key not in by_key:
            by_key[key] = {}
            units.append(by_key[key])
        by_key[key][e.expert] = e
    return units


def _produce(mine: list[Entry], views, cfg: ModelConfig, fp8: bool, dtype) -> Iterator[tuple[str, torch.Tensor]]:
    for unit in _units(mine):
        if isinstance(unit, Entry):
            name, layout, state = _locate(unit, views)
            full = _gather_tp(state[name].detach(), unit, layout, cfg)
            yield from _emit(unit, full, fp8, dtype)
        else:
            yield from _produce_experts(unit, views, cfg, fp8, dtype)


def _produce_experts(unit: dict, views, cfg: ModelConfig, fp8: bool, dtype):
    from megatron.core import parallel_state as ps

    layout, state = _view_for(next(iter(unit.values())), views)
    ep_group = ps.get_expert_model_parallel_group()
    for local in range(layout.num_local_experts):
        entry = unit[layout.global_expert(local)]
        full = _gather_tp(state[local_name(entry, layout)].detach(), entry, layout, cfg)
        for ep_rank, piece in enumerate(_all_gather(full, ep_group, layout.ep_size)):
            yield from _emit(unit[layout.global_expert(local, ep_rank)], piece, fp8, dtype)


def _view_for(entry: Entry, views):
    """(layout, state dict) of the chunk on this rank that holds ``entry``'s layer or stage part."""
    for layout, state in views:
        if (entry.owner == "layer" and entry.layer in layout.layers) or (
            entry.owner == "first" and layout.first_stage) or (entry.owner == "last" and layout.last_stage):
            return layout, state
    raise ValueError(f"no model chunk on this rank holds {entry.global_name}")


def _locate(entry: Entry, views):
    layout, state = _view_for(entry, views)
    name = local_name(entry, layout)
    if name is None or name not in state:
        raise ValueError(f"the Megatron model on this rank has no tensor for {entry.global_name}")
    return name, layout, state


def _gather_tp(piece: torch.Tensor, entry: Entry, layout, cfg: ModelConfig) -> torch.Tensor:
    from megatron.core import parallel_state as ps

    rank, size = layout.tp_coords(entry)
    rows = cfg.vocab_size if entry.tp == "vocab" else None
    if size == 1 or entry.tp == "replicated":
        return unshard([piece], entry.tp, rows)
    group = ps.get_expert_tensor_parallel_group() if entry.is_expert else ps.get_tensor_model_parallel_group()
    return unshard(_all_gather(piece, group, size), entry.tp, rows)


def _all_gather(t: torch.Tensor, group, size: int) -> list[torch.Tensor]:
    if size == 1:
        return [t]
    t = t.contiguous()
    out = [torch.empty_like(t) for _ in range(size)]
    dist.all_gather(out, t, group=group)
    return out


def _emit(entry: Entry, full: torch.Tensor, fp8: bool, dtype):
    target = torch.float32 if entry.fp32 else dtype
    for name, t in zip(entry.hf, entry.merge.to_hf(full)):
        if t.is_floating_point() and t.dtype != target:
            t = t.to(target)
        if fp8 and entry.fp8 and t.dim() == 2:
            q, scale = quantize_blockwise(t)
            yield name, q
            yield name + SCALE_SUFFIX, scale
        else:
            yield name, t.contiguous()


def _buckets(items: Iterable[tuple[str, torch.Tensor]], bucket_bytes: int) -> Iterator[Bucket]:
    bucket, size = [], 0
    for name, t in items:
        nbytes = t.numel() * t.element_size()
        if bucket and size + nbytes > bucket_bytes:
            yield bucket
            bucket, size = [], 0
        bucket.append((name, t))
        size += nbytes
    if bucket:
        yield bucket


def _pp_source(stage: int):
    from megatron.core import parallel_state as ps

    group = ps.get_pipeline_model_parallel_group()
    return group, dist.get_process_group_ranks(group)[stage]


def _broadcast_bucket(bucket: Optional[Bucket], stage: int) -> None:
    group, src = _pp_source(stage)
    header = None if bucket is None else [(n, tuple(t.shape), str(t.dtype).removeprefix("torch.")) for n, t in bucket]
    dist.broadcast_object_list([header], src=src, group=group)
    if bucket is not None:
        flat = torch.cat([t.contiguous().view(-1).view(torch.uint8) for _, t in bucket])
        dist.broadcast(flat, src=src, group=group)


def _receive_bucket(stage: int, device) -> Optional[Bucket]:
    group, src = _pp_source(stage)
    box = [None]
    dist.broadcast_object_list(box, src=src, group=group)
    header = box[0]
    if header is None:
        return None
    dtypes = [getattr(torch, d) for _, _, d in header]
    sizes = [torch.Size(s).numel() * torch.empty((), dtype=dt).element_size() for (_, s, _), dt in zip(header, dtypes)]
    flat = torch.empty(sum(sizes), dtype=torch.uint8, device=device)
    dist.broadcast(flat, src=src, group=group)
    out, offset = [], 0
    for (name, shape, _), dt, n in zip(header, dtypes, sizes):
        out.append((name, flat[offset:offset + n].view(dt).view(shape)))
        offset += n
    return out
