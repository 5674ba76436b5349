"""Write a Megatron ``torch_dist`` checkpoint whose tensors are produced one at a time.

The problem. ``dist_checkpointing.save`` takes a *sharded state dict* (``ShardedTensor``
objects: global key, global shape, this rank's offset, and the local data) and hands it to
``TorchDistSaveShardedStrategy``, which translates it into ``torch.distributed.checkpoint``
(DCP) objects, plans the write across ranks, and then -- in ``FileSystemWriterAsync.
prepare_write_data`` -- resolves *every* write item to its tensor and keeps them all in
``write_buckets`` until the files are written. With a real model that is fine (the tensors are
the parameters); for a converter it means the whole model has to be built and filled first.

The approach. Everything before the bytes is metadata: keys, shapes, offsets, replica ids,
the factories that split ``linear_fc1`` into gate/up pieces (``apply_swiglu_sharded_factory``)
and the write plan. So the importer builds the ``GPTModel`` on the ``meta`` device (no
memory, every parameter has its true shape, dtype and strides), takes its
``sharded_state_dict()``, and saves it with :class:`StreamingSaveStrategy`, a subclass of
Megatron's strategy that differs in one place: its writer (:class:`StreamingWriter`) keeps
only the *write items*, and when writing a file resolves one item, asks the ``materialize``
callback for its real bytes, writes it with DCP's own ``_write_item`` (``torch.save``
serialization, exactly what Megatron writes) and drops it before the next.

Resolving a meta tensor to real data: DCP resolves an item to the local tensor of its
shard, which is the parameter itself or a view of it (factories ``chunk`` it, the translation
to DCP may ``view`` it). Every such view shares the parameter's storage, so
``untyped_storage()`` identifies the parameter, and the view's ``size/stride/storage_offset``
say which part of it is wanted. ``materialize`` produces the parameter's real tensor
(contiguous, same dtype), and :func:`take_view` re-applies the view to it.

What stays identical: the plan, ``.metadata`` and ``metadata.json`` are produced by the
unmodified Megatron / DCP code from the same sharded state dict a real model gives, and
each tensor is serialized by the same ``_write_item``; Megatron's loader cannot tell the
difference (the tests load these checkpoints at TP/PP/EP > 1). Only the number of
``.distcp`` files per rank differs (one instead of ``thread_count``), which the format allows.

Peak memory: the largest parameter's full tensor (plus the HF tensors it is merged from, and
a copy of a non-contiguous view when a factory splits it that way), independent of model size.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import torch

from r1mega import lifeline

Materialize = Callable[[str], torch.Tensor]
"""Local parameter name -> its real, contiguous tensor (dtype and shape of the parameter)."""


def storage_key(t: torch.Tensor) -> int:
    """An id shared by a tensor and all its views (meta tensors included)."""
    return t.untyped_storage()._cdata


def take_view(real: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """The part of ``real`` that the view ``like`` (of the same-shaped meta/real base) selects,
    as a tensor whose storage is exactly its bytes (``torch.save`` of a view would save the
    whole base). A contiguous part (the gate or up half of ``linear_fc1``, which Megatron saves
    as two pieces) gets a slice of ``real``'s storage -- shared memory, no copy; any other part
    is copied."""
    if like.shape == real.shape and like.stride() == real.stride() and like.storage_offset() == 0:
        return real
    view = real.as_strided(like.size(), like.stride(), like.storage_offset())
    if not view.is_contiguous():
        return view.clone()
    size = real.element_size()
    start = view.storage_offset() * size
    storage = real.untyped_storage()[start:start + view.numel() * size]
    return torch.empty(0, dtype=real.dtype).set_(storage, 0, view.size(), view.stride())


def _writer_class():
    from megatron.core.dist_checkpointing.strategies.filesystem_async import FileSystemWriterAsync
    from torch.distributed.checkpoint.filesystem import _write_item
    from torch.distributed.checkpoint.planner import WriteItemType

    class StreamingWriter(FileSystemWriterAsync):
        """``FileSystemWriterAsync`` that resolves and writes one item at a time (module doc)."""

        def __init__(self, checkpoint_dir, resolve: Callable[[torch.Tensor], torch.Tensor]):
            super().__init__(checkpoint_dir, thread_count=1)
            self._resolve = resolve
            self._results = None

        def prepare_write_data(self, plan, planner) -> None:
            self._planner = planner
            self.write_buckets = []
            if plan.items:
                name = f"{plan.storage_data.prefix}0.distcp"
                self.write_buckets.append((os.path.join(self.checkpoint_dir, name), name, list(plan.items)))
            self.results_queue = None

        def get_save_function_and_args(self):
            if not self.write_buckets:
                self._results = []
                return None, None, []
            return self._write_all, None, []

        def _write_all(self) -> None:
            from torch.distributed.checkpoint.filesystem import SerializationFormat

            results = []
            for path, storage_key_, items in self.write_buckets:
                # bytes objects first, then tensors in plan order (the state dict's order, so a
                # parameter split by a factory is resolved for consecutive items)
                items = sorted(items, key=lambda it: it.type != WriteItemType.BYTE_IO)
                with open(path, "wb") as stream:
                    for item in items:
                        data = self._planner.resolve_data(item)
                        if item.type != WriteItemType.BYTE_IO:
                            data = self._resolve(data)
                        results.append(_write_item(self.transforms, stream, data, item, storage_key_,
                                                   serialization_format=SerializationFormat.TORCH_SAVE))
                        del data
                    stream.flush()
                    os.fsync(stream.fileno())
            self._results = results

        def retrieve_write_results(self):
            assert self._results is not None, "write results requested before the files were written"
            return self._results

    return StreamingWriter


def _strategy_class():
    from megatron.core.dist_checkpointing.strategies.state_dict_saver import save_state_dict_async_plan
    from megatron.core.dist_checkpointing.strategies.torch import (
        MCoreSavePlanner,
        TorchDistSaveShardedStrategy,
        _replace_state_dict_keys_with_sharded_keys,
        mcore_to_pyt_state_dict,
    )

    writer_cls = _writer_class()

    class StreamingSaveStrategy(TorchDistSaveShardedStrategy):
        """Megatron's ``torch_dist`` save with :class:`StreamingWriter` (module docstring)."""

        def __init__(self, resolve: Callable[[torch.Tensor], torch.Tensor]):
            super().__init__("torch_dist", 1)
            self._resolve = resolve

        def async_save(self, sharded_state_dict, checkpoint_dir: Path):
            sharded_state_dict, _, _ = _replace_state_dict_keys_with_sharded_keys(
                sharded_state_dict, self.keep_only_main_replica)
            pyt_state_dict = mcore_to_pyt_state_dict(sharded_state_dict, False)
            writer = writer_cls(checkpoint_dir, self._resolve)
            ret = save_state_dict_async_plan(
                pyt_state_dict, writer, None, 0,
                planner=MCoreSavePlanner(dedup_replicated_tensors=not self.keep_only_main_replica,
                                         flatten_state_dict=False),
            )
            return self._get_save_and_finalize_callbacks(writer, ret[0])

    return StreamingSaveStrategy


class Resolver:
    """Meta view -> real bytes, through ``materialize`` (keeps the last parameter, because a
    factory-split parameter is asked for once per piece, consecutively)."""

    def __init__(self, names_by_storage: dict[int, str], materialize: Materialize):
        self.names = names_by_storage
        self.materialize = materialize
        self._last: tuple[str, torch.Tensor] | None = None
        self.resolved = 0

    def __call__(self, view: torch.Tensor) -> torch.Tensor:
        key = storage_key(view)
        if key not in self.names:
            if view.device.type == "meta":
                raise AssertionError(f"a meta tensor {tuple(view.shape)} of no known parameter reached the writer")
            return view.detach().cpu()
        name = self.names[key]
        if self._last is None or self._last[0] != name:
            self._last = None  # drop the previous tensor before producing the next
            self._last = (name, self.materialize(name))
        self.resolved += 1
        return take_view(self._last[1], view)


def save_streaming(chunk, path: str | Path, materialize: Materialize) -> Resolver:
    """``dist_checkpointing.save`` of ``chunk`` (a model built on the meta device) into ``path``,
    with every parameter's data produced by ``materialize(local_name)`` when it is written.
    All ranks call this. Returns the resolver (its ``resolved`` counts items written)."""
    from megatron.core import dist_checkpointing

    state = chunk.state_dict(keep_vars=True)
    names = {storage_key(t): n for n, t in state.items() if isinstance(t, torch.Tensor)}
    resolver = Resolver(names, materialize)
    Path(path).mkdir(parents=True, exist_ok=True)
    lifeline.install_checkpoint_writer_queue()
    dist_checkpointing.save(chunk.sharded_state_dict(), str(path), sharded_strategy=_strategy_class()(resolver))
    return resolver
