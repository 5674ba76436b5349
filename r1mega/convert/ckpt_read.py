"""Read an r1mega Megatron checkpoint as HF tensors, a few tensors at a time (one process).

The single-process exporter does not build and load the model. It builds it on the meta
device (:func:`~r1mega.convert.megatron_io.build_chunk` with ``meta=True``) only for its
``sharded_state_dict()`` -- the checkpoint key, global shape and offset of every parameter,
and the factories that store ``linear_fc1`` as gate/up pieces -- and then asks
``dist_checkpointing.load`` for small *subsets* of it: a group of consecutive parameters,
each given a freshly allocated tensor. Megatron's loader reads only those items' bytes from
the ``.distcp`` files (DCP's planner maps each requested chunk to its storage range; the
``.metadata`` index is cached between calls) and applies the factory merges, so what comes
back is exactly what a loaded model would hold. Each group is converted to HF tensors
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

import dataclasses
from pathlib import Path
from typing import Iterator

import torch

from r1mega.convert.export_stream import _emit, _units
from r1mega.convert.mappings import Entry, MappingOptions, entries
from r1mega.convert.megatron_io import MODEL_DIR
from r1mega.convert.sharding import unshard
from r1mega.models.config import ModelConfig


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
            raise ValueError(f"{iter_dir} has no {MODEL_DIR}/ directory (not an r1mega checkpoint iteration)")
        self.sharded = chunk.sharded_state_dict()
        self.group_bytes = group_bytes
        self.entries = ordered_entries(cfg, opts)
        missing = [e.global_name for e in self.entries if e.global_name not in self.sharded]
        if missing:
            raise ValueError(f"the Megatron model has no tensor(s) {missing[:5]} that the mapping exports")
        self.loads = 0

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

    def _load(self, group: list[Entry]) -> dict[str, torch.Tensor]:
        from megatron.core import dist_checkpointing
        from megatron.core.dist_checkpointing.validation import StrictHandling

        sub = {}
        for e in group:
            sh = self.sharded[e.global_name]
            sub[e.global_name] = dataclasses.replace(sh, data=torch.empty(sh.data.shape, dtype=sh.data.dtype))
        state, _, absent = dist_checkpointing.load(sub, str(self.path), strict=StrictHandling.RETURN_UNEXPECTED,
                                                validate_access_integrity=False)
        if absent:
            raise ValueError(f"checkpoint {self.path} lacks tensor(s) the model needs: {sorted(absent)[:5]}")
        self.loads += 1
        return state

    def hf_tensors(self, fp8: bool = False, dry_run: bool = False) -> Iterator[tuple[str, torch.Tensor]]:
        """Every ``(hf_name, tensor)``; meta tensors (nothing read) when ``dry_run``."""
        for group in self._groups():
            if dry_run:
                state = {e.global_name: torch.empty(self.sharded[e.global_name].data.shape, device="meta",
                                                    dtype=self.sharded[e.global_name].data.dtype) for e in group}
            else:
                state = self._load(group)
            for e in group:
                rows = self.cfg.vocab_size if e.tp == "vocab" else None
                full = unshard([state.pop(e.global_name)], e.tp, rows)
                yield from _emit(e, full, fp8, self.dtype)
                del full
