"""Fill a live (possibly sharded) Megatron model from a Hugging Face checkpoint.

For every mapping entry this rank owns (:func:`~r1mega.convert.sharding.local_name`), the HF
tensors are read lazily, merged into the full Megatron tensor, cut to this rank's TP piece
and copied into the parameter (or buffer: the router's expert bias). Nothing else is held in
memory, so peak memory is the model shard plus the largest merged tensor.

Every check happens before the first byte is read, and each error names the tensor:

* :func:`check_hf_tensors` -- every HF tensor the mapping needs is present with the shape the
  model expects, and the checkpoint has nothing the mapping does not know (MTP layers the
  model does not have are skipped, with a log line; HF copies of shared tensors are compared);
* while filling -- every Megatron parameter of the chunk is covered by exactly one entry.

Used by the importer (then saved as a dist checkpoint) and directly by training or serving
code that wants to start from HF weights without an offline conversion.
"""

from __future__ import annotations

import logging
from typing import Iterable

import torch

from r1mega.config.errors import InputError
from r1mega.convert.hf_io import HFReader
from r1mega.convert.mappings import MappingOptions, entries, skipped_hf_prefixes
from r1mega.convert.mappings.base import Copy, GateUp
from r1mega.convert.sharding import global_shape, local_name, rank_layout, shard, unwrap_chunks
from r1mega.models.config import ModelConfig

log = logging.getLogger(__name__)

IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)
"""Buffers some older HF checkpoints saved; recomputed by every implementation."""


def mapping_options(cfg: ModelConfig, chunks: Iterable) -> MappingOptions:
    """The mapping options matching how ``chunks`` were built (spec, grouped GEMM, MTP)."""
    from r1mega.models.provider import resolve_spec

    chunks = unwrap_chunks(chunks)
    spec = resolve_spec(cfg)
    # The provider builds MTP layers whenever the config has them (on the last stage only), and
    # every rank must walk the same table, so this depends on the config, not on the chunks.
    return MappingOptions(spec=spec, grouped_gemm=cfg.moe_grouped_gemm and cfg.is_moe and spec == "te",
                          include_mtp=cfg.mtp_num_layers > 0)


def check_hf_tensors(reader: HFReader, cfg: ModelConfig, opts: MappingOptions, compare_copies: bool = True) -> None:
    """Raise ValueError naming the first missing HF tensor, or the unexpected ones (shapes are
    checked per tensor while filling, against the model actually built). MTP layers the
    checkpoint declares beyond the model's are skipped, with a log line. ``compare_copies``:
    also compare the HF copies of shared tensors (:func:`check_copies`)."""
    table = entries(cfg, opts)
    needed = {n for e in table for n in e.hf}
    present = reader.names()
    for e in table:
        for name in e.hf:
            if name not in present and not e.export_copy:
                raise InputError(f"HF checkpoint {reader.path} is missing tensor {name!r} "
                                 f"(needed for Megatron {e.global_name})")
    skipped = tuple(skipped_hf_prefixes(cfg, opts, reader.config))
    dropped = sum(n.startswith(skipped) for n in present) if skipped else 0
    if dropped:
        log.warning("%s: skipping %d tensor(s) of the multi-token-prediction layer(s) %s: the model has "
                    "model.mtp_num_layers=%d", reader.path, dropped, [p.rstrip(".") for p in skipped],
                    cfg.mtp_num_layers)
    if cfg.tie_embeddings:
        needed.add("lm_head.weight")  # some tied checkpoints still store the (identical) head
    unexpected = sorted(n for n in present - needed
                        if not (skipped and n.startswith(skipped)) and not n.endswith(IGNORED_SUFFIXES))
    if unexpected:
        more = f" and {len(unexpected) - 5} more" if len(unexpected) > 5 else ""
        raise InputError(f"HF checkpoint {reader.path} has tensor(s) the {cfg.family} mapping does not know: "
                         f"{unexpected[:5]}{more} (does config.json match the weights?)")
    if compare_copies:
        check_copies(reader, table)


def check_copies(reader: HFReader, table) -> list[str]:
    """HF copies of shared tensors (``Entry.export_copy``: DeepSeek's MTP ``embed_tokens`` and
    ``shared_head.head``) that differ from the tensor Megatron imports instead. Megatron keeps
    one tensor, so such a copy is lost on import: logged as a warning, and returned."""
    source = {e.global_name: e for e in table if not (e.export_copy or e.tied)}
    present, differ = reader.names(), []
    for e in table:
        if not e.export_copy or e.hf[0] not in present:
            continue
        main = source[e.global_name].hf[0]
        copy, orig = reader.get(e.hf[0]), reader.get(main)
        if copy.shape != orig.shape or not torch.equal(copy, orig):
            differ.append(e.hf[0])
            log.warning("%s: %s differs from %s; Megatron shares one tensor, so import keeps %s and "
                        "export writes it for both", reader.path, e.hf[0], main, main)
        del copy, orig
    return differ


def expected_full_shape(entry, target: torch.Tensor, layout, cfg: ModelConfig) -> tuple:
    rank, size = layout.tp_coords(entry)
    shape = global_shape(tuple(target.shape), entry.tp, size)
    if entry.tp == "vocab":
        shape = (cfg.vocab_size, *shape[1:])
    return shape


def chunk_plan(chunk, cfg: ModelConfig, reader: HFReader, table) -> dict:
    """``{local name: entry}`` for every tensor of ``chunk`` (one model chunk on this rank),
    after checking that each is covered by exactly one entry and that the HF tensors merge to
    the shape the model expects -- all from headers, before a byte of data is read."""
    layout = rank_layout(chunk, cfg.num_experts)
    state = chunk.state_dict(keep_vars=True)
    plan = {}
    for entry in table:
        name = local_name(entry, layout)
        if name is None or entry.export_copy or (entry.tied and name not in state):
            continue
        if name not in state:
            raise InputError(f"the Megatron model has no tensor {name!r} (mapped from HF {list(entry.hf)})")
        check_shape(entry, state[name], layout, cfg, reader)
        plan[name] = entry
    todo = sorted(k for k in state if not k.endswith("_extra_state") and k not in plan)
    if todo:
        raise InputError(f"Megatron tensor(s) not covered by the {cfg.family} mapping: {todo[:5]}")
    return plan


def fill_from_hf(chunks, cfg: ModelConfig, reader: HFReader, opts: MappingOptions | None = None) -> int:
    """Copy the HF weights into ``chunks`` (this rank's model chunks). Returns tensors filled."""
    chunks = unwrap_chunks(chunks)
    opts = opts or mapping_options(cfg, chunks)
    table = entries(cfg, opts)
    filled = 0
    for chunk in chunks:
        layout = rank_layout(chunk, cfg.num_experts)
        state = chunk.state_dict(keep_vars=True)
        for name, entry in chunk_plan(chunk, cfg, reader, table).items():
            target = state[name]
            with torch.no_grad():
                target.data.copy_(hf_local_tensor(entry, tuple(target.shape), target.dtype, layout, cfg, reader))
            filled += 1
    return filled


def check_shape(entry, target: torch.Tensor, layout, cfg: ModelConfig, reader: HFReader) -> None:
    """ValueError naming the HF tensors when they do not merge to ``target``'s full shape."""
    want = expected_full_shape(entry, target, layout, cfg)
    shapes = [reader.shape(n) for n in entry.hf]
    got = entry.merge.megatron_shape(shapes)
    if tuple(got) != tuple(want):
        detail = ", ".join(f"{n} {tuple(s)}" for n, s in zip(entry.hf, shapes))
        raise InputError(f"wrong shape: HF {detail} gives {tuple(got)} for Megatron {entry.global_name}, "
                         f"which needs {tuple(want)}")


def row_ranges(entry, shape: tuple, dtype: torch.dtype, layout, reader: HFReader):
    """``[(hf name, first row, rows)]`` whose dim-0 concatenation is this rank's piece of
    ``entry``, or None when the piece is not that (a merge other than a copy or gate/up
    concatenation, a split along dim 1, vocabulary padding, a cast or FP8 dequantization,
    uneven splits -- those take the general path, which also names the errors)."""
    if type(entry.merge) not in (Copy, GateUp) or entry.tp == "vocab" or not shape:
        return None
    rank, size = layout.tp_coords(entry)
    if entry.tp == "row" and size > 1:
        return None
    infos = [reader.stored(n) for n in entry.hf]
    if any(i.dtype != dtype or not i.shape or tuple(i.shape[1:]) != tuple(shape[1:]) for i in infos):
        return None
    out = []
    for name, info in zip(entry.hf, infos):
        rows = info.shape[0]
        if entry.tp == "replicated" or size == 1:
            out.append((name, 0, rows))
        elif rows % size:
            return None
        else:
            out.append((name, rank * (rows // size), rows // size))
    return out if sum(n for _, _, n in out) == shape[0] else None


@torch.no_grad()
def hf_local_tensor(entry, shape: tuple, dtype: torch.dtype, layout, cfg: ModelConfig,
                    reader: HFReader) -> torch.Tensor:
    """This rank's piece of ``entry`` (``shape``, ``dtype``), read from HF, merged and cut to
    its TP shard; contiguous and owning its memory (the HF tensors are dropped on return).

    Most tensors (copies and gate/up concatenations split along dim 0 or not at all, stored in
    the model's dtype) are a few contiguous row ranges of the HF files: those are read straight
    into the result (:func:`row_ranges`), once, and only this rank's rows. The rest are read
    whole, merged and cut."""
    ranges = row_ranges(entry, shape, dtype, layout, reader)
    if ranges is not None:
        out = torch.empty(shape, dtype=dtype)
        row = 0
        for name, first, rows in ranges:
            reader.read_rows_into(name, first, out[row:row + rows])
            row += rows
        return out
    full = entry.merge.to_megatron([reader.get(n, dtype) for n in entry.hf])
    rank, size = layout.tp_coords(entry)
    rows = shape[0] * size if entry.tp == "vocab" else None  # the model's padded vocabulary
    piece = shard(full, entry.tp, rank, size, rows)
    del full
    if piece.is_contiguous() and piece.untyped_storage().nbytes() == piece.numel() * piece.element_size():
        return piece
    return piece.contiguous() if not piece.is_contiguous() else piece.clone()
