"""Read an r1mega Megatron checkpoint as HF tensors, a few tensors at a time (one process).

The single-process exporter does not build and load the model. It builds it on the meta
device (:func:`~r1mega.convert.megatron_io.build_chunk` with ``meta=True``) only for its
``sharded_state_dict()`` -- the checkpoint key, global shape and offset of every parameter,
and the factories that store ``linear_fc1`` as gate/up pieces -- and then reads small groups of
consecutive parameters straight from the ``torch_dist`` (DCP) files: each stored piece
(key, global offset, shape; Megatron prepends layer/expert axes) becomes a requested chunk,
DCP's own ``create_read_items_for_chunk_list`` maps it onto the stored chunks (whatever
layout the checkpoint was written at), and ``FileSystemReader.read_data`` copies exactly
those byte ranges into the piece's place in a freshly allocated parameter tensor -- what a
loaded model would hold. (``dist_checkpointing.load`` cannot be used on a subset: its
translation to torch ``ShardedTensor``\ s expects every layer of a layer-stacked key to be
requested together.) The ``.metadata`` index is read once. Each group is converted to HF tensors
(:func:`r1mega.convert.export_stream.emit`, the code the live streamer uses) and dropped.

:meth:`CheckpointSource.hf_tensors` with ``dry_run=True`` runs the same walk on meta tensors
and reads nothing: it yields every HF name with its shape and dtype, which is what the
shard writer needs to lay out the files before the first byte (``hf_io.PlannedShardWriter``).

Order: the streamer's (``export_stream._units``): table order, with the routed experts of one
Megatron tensor of one layer kept together -- so the files match the multi-rank path.
Peak memory: one group (at most ``group_bytes``, or one tensor if larger) plus the HF tensors
made from one of its entries.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import torch

from r1mega.config.errors import InputError
from r1mega.convert.export_stream import _emit, _units
from r1mega.convert.mappings import Entry, MappingOptions, entries
from r1mega.convert.sharding import unshard
from r1mega.models.config import ModelConfig
from r1mega.training.ckpt_layout import MODEL_DIR


def ordered_entries(cfg: ModelConfig, opts: MappingOptions) -> list[Entry]:
    """Exported entries in stream order (experts of one tensor of one layer together)."""
    out = []
    for unit in _units([e for e in entries(cfg, opts) if not e.tied]):
        out += [unit[k] for k in sorted(unit)] if isinstance(unit, dict) else [unit]
    return out


class CheckpointSource:
    """HF tensors of one checkpoint iteration, read group by group (module docstring)."""

    def __init__(self, chunk, cfg: ModelConfig, iter_dir: str | Path, opts: MappingOptions,
                 dtype: torch.dtype, group_bytes: int = 256 * 2**20):
        from megatron.core import parallel_state as ps

        if ps.get_tensor_model_parallel_world_size() * ps.get_pipeline_model_parallel_world_size() * \
                ps.get_expert_model_parallel_world_size() * ps.get_expert_tensor_parallel_world_size() != 1:
            raise AssertionError("CheckpointSource reads whole tensors: build the chunk at TP=PP=EP=ETP=1")
        self.cfg, self.opts, self.dtype = cfg, opts, dtype
        self.path = Path(iter_dir) / MODEL_DIR
        if not self.path.is_dir():
            raise InputError(f"{iter_dir} has no {MODEL_DIR}/ directory (not an r1mega checkpoint iteration)")
        self.sharded = chunk.sharded_state_dict()
        self.group_bytes = group_bytes
        self.entries = ordered_entries(cfg, opts)
        missing = [e.global_name for e in self.entries if e.global_name not in self.sharded]
        if missing:
            raise InputError(f"the Megatron model has no tensor(s) {missing[:5]} that the mapping exports")
        self.loads = 0
        self.max_group_bytes = 0
        """Largest group read so far (bytes of the parameters it filled)."""

    def _groups(self) -> Iterator[list[Entry]]:
        group, size = [], 0
        for e in self.entries:
            data = self.sharded[e.global_name].data
            nbytes = data.numel() * data.element_size()
            if group and size + nbytes > self.group_bytes:
                yield group
                group, size = [], 0
            group.append(e)
            size += nbytes
        if group:
            yield group

    def _pieces(self, name: str) -> list:
        """The stored pieces of parameter ``name``: Megatron ``ShardedTensor``\ s whose ``data``
        are (meta) views of the parameter; factories (gate/up of ``linear_fc1``) applied."""
        from megatron.core.dist_checkpointing.mapping import ShardedTensor, ShardedTensorFactory

        sh = self.sharded[name]
        if isinstance(sh, ShardedTensorFactory):
            built = sh.build()
            return [p for p in (built.values() if isinstance(built, dict) else built)
                    if isinstance(p, ShardedTensor)] if not isinstance(built, ShardedTensor) else [built]
        return [sh]

    def _load(self, group: list[Entry]) -> dict[str, torch.Tensor]:
        """Read ``group``'s parameters straight from the DCP files (see module docstring)."""
        from torch.distributed.checkpoint.metadata import ChunkStorageMetadata
        from torch.distributed.checkpoint.planner import LoadPlan
        from torch.distributed.checkpoint.planner_helpers import create_read_items_for_chunk_list

        reader, meta = self._reader()
        targets, items, out = {}, [], {}
        for e in group:
            if e.global_name in out:  # an export copy of a tensor already in this group
                continue
            param = self.sharded[e.global_name].data
            real = out[e.global_name] = torch.empty(param.shape, dtype=param.dtype)
            for piece in self._pieces(e.global_name):
                v = piece.data
                lead = (1,) * piece.prepend_axis_num
                dest = real.as_strided(v.size(), v.stride(), v.storage_offset()).view(*lead, *v.shape) \
                    if v.is_contiguous() else None
                if dest is None:
                    raise AssertionError(f"{piece.key}: non-contiguous stored piece")
                if piece.key not in meta.state_dict_metadata:
                    raise InputError(f"checkpoint {self.path} lacks tensor {piece.key!r} (for {e.global_name})")
                chunk = ChunkStorageMetadata(offsets=torch.Size(piece.global_offset), sizes=dest.shape)
                found = create_read_items_for_chunk_list(piece.key, meta.state_dict_metadata[piece.key], [chunk])
                if sum(i.lengths.numel() for i in found) != dest.numel():
                    raise InputError(f"checkpoint {self.path}: tensor {piece.key!r} does not cover "
                                     f"{tuple(dest.shape)} at {tuple(piece.global_offset)} (for {e.global_name})")
                targets[(piece.key, tuple(piece.global_offset))] = dest
                items += found
        reader.read_data(LoadPlan(items), _Into(targets)).wait()
        self.loads += 1
        self.max_group_bytes = max(self.max_group_bytes, sum(t.numel() * t.element_size() for t in out.values()))
        return out

    def _reader(self):
        if getattr(self, "_fs", None) is None:
            from torch.distributed.checkpoint import FileSystemReader

            reader = FileSystemReader(str(self.path))
            meta = reader.read_metadata()
            reader.set_up_storage_reader(meta, True)
            self._fs = (reader, meta)
        return self._fs

    def hf_tensors(self, fp8: bool = False, dry_run: bool = False) -> Iterator[tuple[str, torch.Tensor]]:
        """Every ``(hf_name, tensor)``; meta tensors (nothing read) when ``dry_run``."""
        for group in self._groups():
            if dry_run:
                state = {e.global_name: torch.empty(self.sharded[e.global_name].data.shape, device="meta",
                                                    dtype=self.sharded[e.global_name].data.dtype) for e in group}
            else:
                state = self._load(group)
            last_use = {e.global_name: i for i, e in enumerate(group)}
            for i, e in enumerate(group):
                rows = self.cfg.vocab_size if e.tp == "vocab" else None
                piece = state.pop(e.global_name) if last_use[e.global_name] == i else state[e.global_name]
                full = unshard([piece], e.tp, rows)
                yield from _emit(e, full, fp8, self.dtype)
                del full, piece


class _Into:
    """The two planner calls ``FileSystemReader.read_data`` makes: where a read item's bytes go."""

    def __init__(self, targets: dict):
        self.targets = targets

    def resolve_tensor(self, req):
        t = self.targets[(req.dest_index.fqn, tuple(req.dest_index.offset))]
        for dim, (start, length) in enumerate(zip(req.dest_offsets, req.lengths)):
            t = t.narrow(dim, start, length)
        return t

    def commit_tensor(self, req, tensor) -> None:
        pass

    def load_bytes(self, req, value) -> None:
        raise AssertionError(f"unexpected bytes item {req.dest_index.fqn} in a tensor read")
