"""Read and write Hugging Face safetensors checkpoints one tensor at a time.

:class:`HFReader` opens ``config.json`` and either ``model.safetensors.index.json`` (sharded)
or the ``*.safetensors`` files themselves, and serves tensors lazily through
``safetensors.safe_open`` (memory-mapped). It keeps at most ``max_open`` files mapped, so
pages of files already consumed are released and resident memory stays near one tensor, not
one checkpoint. FP8 weights with a ``<name>_scale_inv`` companion are dequantized on read
(:mod:`r1mega.convert.fp8`); the companions are hidden from :meth:`HFReader.names`.

:class:`ShardedWriter` buffers tensors up to ``max_shard_bytes``, writes each full buffer as
one shard, and on :meth:`ShardedWriter.finish` names them ``model-0000i-of-0000n.safetensors``
and writes ``model.safetensors.index.json`` (always, even for one shard; transformers and
vLLM both accept that).
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from pathlib import Path
from typing import Optional

import torch
from safetensors import safe_open

from r1mega.convert.fp8 import SCALE_SUFFIX, dequantize_blockwise, is_fp8

INDEX = "model.safetensors.index.json"


class HFReader:
    """Lazy tensor access to a HF checkpoint directory (see module docstring)."""

    def __init__(self, path: str | Path, max_open: int = 1):
        self.path = Path(path)
        cfg = self.path / "config.json"
        if not cfg.is_file():
            raise ValueError(f"{self.path} is not a Hugging Face checkpoint: no config.json")
        self.config = json.loads(cfg.read_text())
        self._files = self._index()
        self._open: OrderedDict[str, object] = OrderedDict()
        self.max_open = max_open

    def _index(self) -> dict[str, str]:
        index = self.path / INDEX
        if index.is_file():
            return dict(json.loads(index.read_text())["weight_map"])
        files = sorted(self.path.glob("*.safetensors"))
        if not files:
            raise ValueError(f"{self.path} has no *.safetensors files (and no {INDEX})")
        out = {}
        for f in files:
            with safe_open(f, "pt") as h:
                out.update({k: f.name for k in h.keys()})
        return out

    def _handle(self, name: str):
        if name not in self._files:
            raise ValueError(f"HF checkpoint {self.path} has no tensor {name!r}")
        fname = self._files[name]
        if fname in self._open:
            self._open.move_to_end(fname)
        else:
            if not (self.path / fname).is_file():
                raise ValueError(f"HF checkpoint {self.path}: {INDEX} names {fname} for {name!r}, which is missing")
            self._open[fname] = safe_open(self.path / fname, "pt")
            while len(self._open) > self.max_open:
                self._open.popitem(last=False)  # unmaps the least recently used file
        return self._open[fname]

    def names(self) -> set[str]:
        """Tensor names, without FP8 scale companions."""
        return {n for n in self._files if not (n.endswith(SCALE_SUFFIX) and n[: -len(SCALE_SUFFIX)] in self._files)}

    def __contains__(self, name: str) -> bool:
        return name in self._files

    def shape(self, name: str) -> tuple:
        return tuple(self._handle(name).get_slice(name).get_shape())

    def get(self, name: str, dtype: Optional[torch.dtype] = None) -> torch.Tensor:
        """The tensor (dequantized when FP8 with a scale), cast to ``dtype`` if given."""
        t = self._handle(name).get_tensor(name)
        scale = name + SCALE_SUFFIX
        if is_fp8(t):
            if scale not in self._files:
                raise ValueError(f"HF tensor {name!r} is FP8 but has no {scale!r}")
            t = dequantize_blockwise(t, self._handle(scale).get_tensor(scale), dtype or torch.bfloat16)
        return t if dtype is None else t.to(dtype)

    def is_quantized(self) -> bool:
        return any(n.endswith(SCALE_SUFFIX) for n in self._files)

    def nbytes(self) -> int:
        """Bytes of tensor data on disk (for throughput figures)."""
        return sum((self.path / f).stat().st_size for f in set(self._files.values()))

    def close(self) -> None:
        self._open.clear()


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


SAFETENSORS_DTYPES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.float8_e4m3fn: "F8_E4M3", torch.float8_e5m2: "F8_E5M2", torch.int64: "I64", torch.int32: "I32",
    torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL",
}


def write_safetensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: Optional[dict] = None) -> None:
    """Write a ``.safetensors`` file tensor by tensor, without assembling it in memory.

    The format is an 8-byte little-endian header length, a JSON header mapping each name to
    ``{dtype, shape, data_offsets}`` (sorted by name, offsets into the data block), then the
    raw little-endian bytes. ``safetensors.torch.save_file`` first copies every tensor into a
    ``bytes`` object (doubling peak memory for the shard); this writes each one straight from
    its storage, and fsyncs it (like ``dist_checkpointing``) so the final rename publishes
    durable data.
    """
    header: dict = {"__metadata__": metadata} if metadata else {}
    offset = 0
    names = sorted(tensors)
    for name in names:
        t = tensors[name]
        nbytes = t.numel() * t.element_size()
        header[name] = {"dtype": SAFETENSORS_DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # keep the data block 8-byte aligned, as safetensors does
    with open(path, "wb") as fh:
        fh.write(len(blob).to_bytes(8, "little"))
        fh.write(blob)
        for name in names:
            t = tensors[name].detach().cpu().contiguous()
            if t.numel():
                fh.write(t.reshape(-1).view(torch.uint8).numpy().data)
        fh.flush()
        os.fsync(fh.fileno())  # durable before the output directory is renamed into place
