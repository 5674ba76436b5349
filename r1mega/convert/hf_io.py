"""Read and write Hugging Face safetensors checkpoints one tensor at a time.

:class:`HFReader` opens ``config.json`` and either ``model.safetensors.index.json`` (sharded)
or the ``*.safetensors`` files themselves, and serves tensors lazily: headers are parsed once
(:func:`~r1mega.convert.st_format.read_header`), each :meth:`HFReader.get` reads exactly that
tensor's bytes into new memory with ``pread`` (no memory map, so nothing stays resident after
the caller drops the tensor; see :mod:`r1mega.convert.st_format`). FP8 weights with a
``<name>_scale_inv`` companion are dequantized on read (:mod:`r1mega.convert.fp8`); the
companions are hidden from :meth:`HFReader.names`.

Writers (both name shards ``model-0000i-of-0000n.safetensors`` and always write
``model.safetensors.index.json``, even for one shard; transformers and vLLM accept that):

* :class:`PlannedShardWriter` -- knows every ``(name, shape, dtype)`` in order before the first
  byte (the single-process exporter gets them from a dry run on meta tensors), assigns shards
  greedily (a shard is closed when the next tensor would push it past ``max_shard_bytes``),
  writes each header first and every tensor at its offset as it arrives: nothing is buffered;
* :class:`ShardedWriter` -- for streams whose contents are not known ahead (the multi-rank
  exporter's rank 0): buffers up to ``max_shard_bytes`` and writes each full shard.

Both produce the same files for the same stream (same shard split, sorted headers).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Optional

import torch

from r1mega.config.errors import InputError
from r1mega.convert.fp8 import SCALE_SUFFIX, dequantize_blockwise, is_fp8
from r1mega.convert.st_format import (
    TensorInfo,
    header_bytes,
    read_header,
    read_rows_into,
    read_tensor,
    write_at,
    write_safetensors,
)

INDEX = "model.safetensors.index.json"
SHARD_METADATA = {"format": "pt"}


class HFReader:
    """Lazy tensor access to a HF checkpoint directory (see module docstring)."""

    def __init__(self, path: str | Path, max_open: int = 1):
        self.path = Path(path)
        cfg = self.path / "config.json"
        if not cfg.is_file():
            raise InputError(f"{self.path} is not a Hugging Face checkpoint: no config.json")
        self.config = json.loads(cfg.read_text())
        self._files = self._index()
        self._headers: dict[str, dict[str, TensorInfo]] = {}
        self._fds: dict[str, int] = {}
        self.bytes_read = 0

    def _index(self) -> dict[str, str]:
        index = self.path / INDEX
        if index.is_file():
            return dict(json.loads(index.read_text())["weight_map"])
        files = sorted(self.path.glob("*.safetensors"))
        if not files:
            raise InputError(f"{self.path} has no *.safetensors files (and no {INDEX})")
        out = {}
        for f in files:
            out.update({k: f.name for k in read_header(f)})
        return out

    def _info(self, name: str) -> tuple[int, TensorInfo, Path]:
        if name not in self._files:
            raise InputError(f"HF checkpoint {self.path} has no tensor {name!r}")
        fname = self._files[name]
        path = self.path / fname
        if fname not in self._headers:
            if not path.is_file():
                raise InputError(f"HF checkpoint {self.path}: {INDEX} names {fname} for {name!r}, which is missing")
            self._headers[fname] = read_header(path)
            self._fds[fname] = os.open(path, os.O_RDONLY)
        header = self._headers[fname]
        if name not in header:
            raise InputError(f"HF checkpoint {self.path}: {INDEX} puts {name!r} in {fname}, which lacks it")
        return self._fds[fname], header[name], path

    def names(self) -> set[str]:
        """Tensor names, without FP8 scale companions."""
        return {n for n in self._files if not (n.endswith(SCALE_SUFFIX) and n[: -len(SCALE_SUFFIX)] in self._files)}

    def __contains__(self, name: str) -> bool:
        return name in self._files

    def shape(self, name: str) -> tuple:
        return self._info(name)[1].shape

    def _read(self, name: str) -> torch.Tensor:
        fd, info, path = self._info(name)
        self.bytes_read += info.nbytes
        return read_tensor(fd, info, path)

    def stored(self, name: str) -> TensorInfo:
        """Dtype, shape and place of the tensor as stored (FP8 weights: their FP8 dtype)."""
        return self._info(name)[1]

    def read_rows_into(self, name: str, first: int, out: torch.Tensor) -> None:
        """Rows ``first ..`` of the stored tensor (dim 0) into ``out``, with no copy in between
        (``out`` must have the stored dtype: nothing is cast or dequantized here)."""
        fd, info, path = self._info(name)
        read_rows_into(fd, info, first, out, path)
        self.bytes_read += out.numel() * out.element_size()

    def get(self, name: str, dtype: Optional[torch.dtype] = None) -> torch.Tensor:
        """The tensor (dequantized when FP8 with a scale), cast to ``dtype`` if given."""
        t = self._read(name)
        scale = name + SCALE_SUFFIX
        if is_fp8(t):
            if scale not in self._files:
                raise InputError(f"HF tensor {name!r} is FP8 but has no {scale!r}")
            t = dequantize_blockwise(t, self._read(scale), dtype or torch.bfloat16)
        return t if dtype is None else t.to(dtype)

    def is_quantized(self) -> bool:
        return any(n.endswith(SCALE_SUFFIX) for n in self._files)

    def nbytes(self) -> int:
        """Bytes of tensor data on disk (for throughput figures)."""
        return sum((self.path / f).stat().st_size for f in set(self._files.values()))

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        self._headers.clear()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


def plan_shards(specs: Iterable[tuple[str, tuple, torch.dtype]], max_shard_bytes: int) -> list[dict]:
    """Split ``(name, shape, dtype)`` (in stream order) into shards, each ``{name: (shape, dtype)}``:
    a new shard starts when the next tensor would push a non-empty one past ``max_shard_bytes``."""
    shards: list[dict] = [{}]
    size = 0
    for name, shape, dtype in specs:
        if any(name in s for s in shards):
            raise ValueError(f"tensor {name!r} written twice")
        nbytes = torch.Size(shape).numel() * torch.empty((), dtype=dtype).element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = (tuple(shape), dtype)
        size += nbytes
    return [s for s in shards if s]


def shard_name(i: int, n: int) -> str:
    return f"model-{i + 1:05d}-of-{n:05d}.safetensors"


def write_index(out_dir: Path, weight_map: dict[str, str], total_bytes: int) -> None:
    index = {"metadata": {"total_size": total_bytes}, "weight_map": dict(sorted(weight_map.items()))}
    (out_dir / INDEX).write_text(json.dumps(index, indent=2) + "\n")


class PlannedShardWriter:
    """Write a stream whose every ``(name, shape, dtype)`` is known up front (module docstring).

    Each shard file is created with its header when its first tensor arrives, tensors are
    written at their offsets with ``pwrite``, and the file is fsynced and closed when its last
    tensor has arrived. :meth:`finish` checks that everything planned was written.
    """

    def __init__(self, out_dir: str | Path, specs: Iterable[tuple[str, tuple, torch.dtype]],
                 max_shard_bytes: int = 5 * 2**30):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.shards = plan_shards(specs, max_shard_bytes)
        n = len(self.shards)
        self._where = {name: i for i, s in enumerate(self.shards) for name in s}
        self._left = [set(s) for s in self.shards]
        self._fds: dict[int, tuple[int, dict]] = {}
        self.weight_map = {name: shard_name(i, n) for name, i in self._where.items()}
        self.total_bytes = 0

    def add(self, name: str, tensor: torch.Tensor) -> None:
        i = self._where.get(name)
        if i is None or name not in self._left[i]:
            raise AssertionError(f"tensor {name!r} was not planned, or written twice")
        shape, dtype = self.shards[i][name]
        if tuple(tensor.shape) != shape or tensor.dtype != dtype:
            raise AssertionError(f"tensor {name!r} arrived as {tuple(tensor.shape)} {tensor.dtype}, "
                                 f"planned {shape} {dtype}")
        if i not in self._fds:
            prefix, offsets = header_bytes(self.shards[i], SHARD_METADATA)
            path = self.out_dir / shard_name(i, len(self.shards))
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            write_at(fd, prefix, 0)
            self._fds[i] = (fd, offsets)
        fd, offsets = self._fds[i]
        write_at(fd, tensor, offsets[name])
        self.total_bytes += tensor.numel() * tensor.element_size()
        self._left[i].discard(name)
        if not self._left[i]:
            os.fsync(fd)  # durable before the output directory is renamed into place
            os.close(fd)
            del self._fds[i]

    def finish(self) -> list[Path]:
        missing = sorted(n for left in self._left for n in left)
        if missing:
            raise AssertionError(f"planned tensors never written: {missing[:5]}")
        write_index(self.out_dir, self.weight_map, self.total_bytes)
        return [self.out_dir / shard_name(i, len(self.shards)) for i in range(len(self.shards))]

    def close(self) -> None:
        for fd, _ in self._fds.values():
            os.close(fd)
        self._fds.clear()


class ShardedWriter:
    """Write tensors into size-bounded safetensors shards plus an index (see module docstring)."""

    def __init__(self, out_dir: str | Path, max_shard_bytes: int = 5 * 2**30):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.max_shard_bytes = max_shard_bytes
        self._buffer: dict[str, torch.Tensor] = {}
        self._buffer_bytes = 0
        self._shards: list[list[str]] = []
        self.total_bytes = 0

    def add(self, name: str, tensor: torch.Tensor) -> None:
        if name in self._buffer or any(name in s for s in self._shards):
            raise ValueError(f"tensor {name!r} written twice")
        nbytes = tensor.numel() * tensor.element_size()
        if self._buffer and self._buffer_bytes + nbytes > self.max_shard_bytes:
            self._flush()
        self._buffer[name] = tensor.detach().to("cpu").contiguous()
        self._buffer_bytes += nbytes
        self.total_bytes += nbytes

    def _flush(self) -> None:
        if not self._buffer:
            return
        part = self.out_dir / f"part-{len(self._shards):05d}.safetensors"
        write_safetensors(part, self._buffer, metadata={"format": "pt"})
        self._shards.append(sorted(self._buffer))
        self._buffer, self._buffer_bytes = {}, 0

    def finish(self) -> list[Path]:
        """Flush, give shards their final names and write the index; returns the shard paths."""
        self._flush()
        n = len(self._shards)
        weight_map, paths = {}, []
        for i, names in enumerate(self._shards):
            final = self.out_dir / f"model-{i + 1:05d}-of-{n:05d}.safetensors"
            (self.out_dir / f"part-{i:05d}.safetensors").rename(final)
            weight_map.update({k: final.name for k in names})
            paths.append(final)
        index = {"metadata": {"total_size": self.total_bytes}, "weight_map": dict(sorted(weight_map.items()))}
        (self.out_dir / INDEX).write_text(json.dumps(index, indent=2) + "\n")
        return paths
