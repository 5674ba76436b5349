"""What a weight sync moves: ordered buckets of HF tensors, packed into one flat byte buffer each.

The stream from :func:`r1mega.convert.iter_hf_buckets` is deterministic for a given model,
layout, dtype, FP8 flag and bucket size, so the first sync *records* it as a :class:`SyncPlan`
and every later sync only *checks* it (names, shapes and dtypes must repeat exactly; a change
is a bug and raises). The plan is what the vLLM workers receive once: afterwards a bucket
travels as its index plus one transport handle, and the worker cuts the flat buffer back into
named views with :func:`unpack_bucket` without any per-step metadata.

A bucket is packed as the concatenation of its tensors' bytes, each starting at a 16-byte
aligned offset (so every view is aligned for any dtype, fp8 and fp32 included).

A model with multi-token-prediction layers streams them by default (the offline exporter
writes them); the bridge leaves them out of its stream, hence out of the plan, unless asked
(:class:`r1mega.bridge.execute.WeightBridge` ``include_mtp``): vLLM's main model has none.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Optional

import torch

ALIGN = 16


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple
    dtype: str
    """torch dtype name without the ``torch.`` prefix (e.g. ``bfloat16``, ``float8_e4m3fn``)."""
    offset: int
    """Byte offset in the bucket's flat buffer."""

    @property
    def nbytes(self) -> int:
        return _numel(self.shape) * torch.empty((), dtype=self.torch_dtype).element_size()

    @property
    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)


@dataclass(frozen=True)
class BucketSpec:
    tensors: tuple
    """The bucket's :class:`TensorSpec` s, in stream order."""
    nbytes: int
    """Size of the flat buffer (last offset + size, aligned)."""

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.tensors]


@dataclass
class SyncPlan:
    """Ordered buckets of one model's HF tensors (see the module docstring)."""

    buckets: list = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(sum(t.nbytes for t in b.tensors) for b in self.buckets)

    @property
    def max_bucket_bytes(self) -> int:
        return max((b.nbytes for b in self.buckets), default=0)

    @property
    def names(self) -> list[str]:
        return [n for b in self.buckets for n in b.names]

    def append(self, bucket: list[tuple[str, torch.Tensor]]) -> BucketSpec:
        spec = bucket_spec(bucket)
        self.buckets.append(spec)
        return spec

    def check(self, index: int, bucket: list[tuple[str, torch.Tensor]]) -> BucketSpec:
        """The recorded spec of bucket ``index``; ValueError if ``bucket`` does not match it."""
        if index >= len(self.buckets):
            raise ValueError(f"weight sync: bucket {index} is beyond the recorded plan of {len(self.buckets)} "
                             "buckets (the model's tensors changed between syncs)")
        want, got = self.buckets[index], bucket_spec(bucket)
        if want != got:
            diff = _first_difference(want, got)
            raise ValueError(f"weight sync: bucket {index} differs from the recorded plan: {diff}")
        return want

    def to_dict(self) -> dict:
        """Plain data (picklable without torch) for vLLM's RPC."""
        return {"buckets": [{"nbytes": b.nbytes, "tensors": [(t.name, list(t.shape), t.dtype, t.offset)
                                                             for t in b.tensors]} for b in self.buckets]}

    @classmethod
    def from_dict(cls, raw: dict) -> "SyncPlan":
        return cls([BucketSpec(tuple(TensorSpec(n, tuple(s), d, o) for n, s, d, o in b["tensors"]), b["nbytes"])
                    for b in raw["buckets"]])

    def summary(self) -> str:
        return (f"{len(self.names)} tensors in {len(self.buckets)} buckets, {self.total_bytes / 2**30:.3f} GiB "
                f"(largest bucket {self.max_bucket_bytes / 2**20:.1f} MiB)")


def _numel(shape: Iterable[int]) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def bucket_spec(bucket: list[tuple[str, torch.Tensor]]) -> BucketSpec:
    specs, offset = [], 0
    for name, t in bucket:
        offset = _align(offset)
        specs.append(TensorSpec(name, tuple(t.shape), str(t.dtype).removeprefix("torch."), offset))
        offset += t.numel() * t.element_size()
    return BucketSpec(tuple(specs), _align(offset))


def _first_difference(want: BucketSpec, got: BucketSpec) -> str:
    for i, (a, b) in enumerate(zip(want.tensors, got.tensors)):
        if a != b:
            return f"tensor {i}: recorded {a.name} {a.shape} {a.dtype}, now {b.name} {b.shape} {b.dtype}"
    return f"recorded {len(want.tensors)} tensors, now {len(got.tensors)}"


def pack_bucket(bucket: list[tuple[str, torch.Tensor]], spec: BucketSpec,
                out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The bucket's bytes in one flat uint8 tensor laid out per ``spec`` (on the tensors' device)."""
    device = bucket[0][1].device
    if out is None:
        out = torch.empty(spec.nbytes, dtype=torch.uint8, device=device)
    for (_, t), s in zip(bucket, spec.tensors):
        n = s.nbytes
        out[s.offset:s.offset + n].copy_(t.contiguous().view(-1).view(torch.uint8))
    return out


def unpack_bucket(flat: torch.Tensor, spec: BucketSpec) -> list[tuple[str, torch.Tensor]]:
    """Named views into ``flat`` (no copy), the inverse of :func:`pack_bucket`."""
    out = []
    for s in spec.tensors:
        view = flat[s.offset:s.offset + s.nbytes].view(s.torch_dtype).view(s.shape)
        out.append((s.name, view))
    return out
