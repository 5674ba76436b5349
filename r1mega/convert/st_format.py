"""The safetensors file format, read and written one tensor at a time with plain file I/O.

A ``.safetensors`` file is an 8-byte little-endian header length ``N``, ``N`` bytes of JSON
mapping each tensor name to ``{"dtype", "shape", "data_offsets": [begin, end]}`` (offsets
into the data block that starts at ``8 + N``; an optional ``__metadata__`` entry holds
strings), then the raw little-endian tensor bytes.

Why not ``safetensors.safe_open``: it memory-maps the file, and every page a tensor read
touches stays mapped -- and counted in the process's resident set -- until the file is
closed. Reading a 3 GB single-file checkpoint through it therefore ends with ~3 GB resident
even if each tensor is dropped right after use. :func:`read_tensor` instead ``preadinto``\\ s
the bytes straight into a freshly allocated tensor: the only resident memory is the tensor
itself (the kernel's page cache is not the process's memory).

Writing: :func:`header_bytes` lays tensors out sorted by name (as ``safetensors`` does) with
the data block 8-byte aligned, so a writer that knows every name, shape and dtype up front can
write the header first and then each tensor at its offset as it arrives
(:class:`r1mega.convert.hf_io.PlannedShardWriter`); :func:`write_safetensors` does it for an
in-memory dict.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2, "I64": torch.int64, "I32": torch.int32,
    "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool,
}
CODES = {v: k for k, v in DTYPES.items()}
MAX_HEADER = 100 * 2**20
"""Refuse headers above 100 MiB (safetensors' own limit): a corrupt length field."""
from r1mega.config.errors import InputError


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor lives in its file."""

    dtype: torch.dtype
    shape: tuple
    begin: int
    """Absolute byte offset in the file."""
    nbytes: int


def read_header(path: str | Path) -> dict[str, TensorInfo]:
    """Name -> :class:`TensorInfo` for every tensor of ``path`` (ValueError on a bad file)."""
    path = Path(path)
    with open(path, "rb") as fh:
        raw = fh.read(8)
        if len(raw) < 8:
            raise InputError(f"{path} is not a safetensors file (shorter than 8 bytes)")
        (n,) = struct.unpack("<Q", raw)
        if n > MAX_HEADER:
            raise InputError(f"{path} is not a safetensors file (header length {n})")
        header = json.loads(fh.read(n))
    start = 8 + n
    size = path.stat().st_size
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] not in DTYPES:
            raise InputError(f"{path}: tensor {name!r} has unsupported dtype {info['dtype']}")
        dtype, shape = DTYPES[info["dtype"]], tuple(info["shape"])
        begin, end = info["data_offsets"]
        nbytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
        if end - begin != nbytes or start + end > size:
            raise InputError(f"{path}: tensor {name!r} {shape} {info['dtype']} has inconsistent data_offsets "
                             f"{[begin, end]} (file is truncated or corrupt)")
        out[name] = TensorInfo(dtype, shape, start + begin, nbytes)
    return out


def read_tensor(fd: int, info: TensorInfo, path: str | Path = "") -> torch.Tensor:
    """The tensor at ``info`` of the open file ``fd``, read into new memory (no mapping)."""
    buf = torch.empty(info.nbytes, dtype=torch.uint8)
    _pread_into(fd, buf, info.begin, path)
    return buf.view(info.dtype).reshape(info.shape)


def read_rows_into(fd: int, info: TensorInfo, first: int, out: torch.Tensor, path: str | Path = "") -> None:
    """Rows ``first .. first + out.shape[0] - 1`` (dim 0) of the tensor at ``info`` straight
    into ``out`` (contiguous, the tensor's dtype and trailing shape): one contiguous byte range
    of the file, read without an intermediate buffer."""
    if out.dtype != info.dtype or tuple(out.shape[1:]) != tuple(info.shape[1:]) or not out.is_contiguous():
        raise InputError(f"{path}: cannot read rows of {tuple(info.shape)} {info.dtype} into "
                         f"{tuple(out.shape)} {out.dtype}")
    if first < 0 or first + out.shape[0] > info.shape[0]:
        raise InputError(f"{path}: rows {first}..{first + out.shape[0] - 1} are outside {tuple(info.shape)}")
    row_bytes = info.nbytes // info.shape[0]
    _pread_into(fd, out.view(-1).view(torch.uint8), info.begin + first * row_bytes, path)


def _pread_into(fd: int, buf: torch.Tensor, offset: int, path: str | Path) -> None:
    """Fill the flat uint8 tensor ``buf`` from ``fd`` at ``offset``."""
    nbytes = buf.numel()
    view = memoryview(buf.numpy()) if nbytes else memoryview(b"")
    done = 0
    while done < nbytes:
        got = os.preadv(fd, [view[done:]], offset + done)
        if got <= 0:
            raise InputError(f"{path}: unexpected end of file reading {nbytes} bytes at {offset}")
        done += got


def header_bytes(specs: dict[str, tuple[tuple, torch.dtype]], metadata: Optional[dict] = None
                 ) -> tuple[bytes, dict[str, int]]:
    """``(file prefix: length + JSON header, name -> absolute data offset)`` for ``specs``
    (name -> (shape, dtype)), names laid out in sorted order."""
    header: dict = {"__metadata__": metadata} if metadata else {}
    offsets, offset = {}, 0
    for name in sorted(specs):
        shape, dtype = specs[name]
        nbytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
        header[name] = {"dtype": CODES[dtype], "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offsets[name] = offset
        offset += nbytes
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # keep the data block 8-byte aligned, as safetensors does
    prefix = len(blob).to_bytes(8, "little") + blob
    return prefix, {n: len(prefix) + o for n, o in offsets.items()}


def write_at(fd: int, tensor: torch.Tensor | bytes, offset: int) -> None:
    """Write ``tensor``'s bytes (or a ``bytes`` blob) at ``offset`` of ``fd``."""
    if isinstance(tensor, bytes):
        view = memoryview(tensor)
    else:
        t = tensor.detach().cpu().contiguous()
        if not t.numel():
            return
        view = memoryview(t.reshape(-1).view(torch.uint8).numpy())
    done = 0
    while done < len(view):
        done += os.pwritev(fd, [view[done:]], offset + done)


def write_safetensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: Optional[dict] = None) -> None:
    """Write ``tensors`` as one file, each straight from its storage (no whole-file ``bytes``
    copy as in ``safetensors.torch.save_file``), fsynced."""
    prefix, offsets = header_bytes({n: (tuple(t.shape), t.dtype) for n, t in tensors.items()}, metadata)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        write_at(fd, prefix, 0)
        for name, t in tensors.items():
            write_at(fd, t, offsets[name])
        os.fsync(fd)
    finally:
        os.close(fd)
