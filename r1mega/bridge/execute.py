"""One weight sync, trainer side: stream, pack, transport, and drive the workers' reload.

Every trainer rank calls :meth:`WeightBridge.sync` at the same point (the export stream is a
sequence of collectives over TP/EP/PP). The rank that owns the vLLM instance (the *driver*)
additionally brackets the stream with ``r1_begin_sync`` / ``r1_finish_sync`` RPCs and, on the
first sync only, ships each bucket's spec (``r1_extend_plan``) before the bucket itself; later
syncs check the stream against the recorded plan and send only bucket indices and handles.

Memory: one packed buffer of the largest bucket is kept per sync (reused across buckets)
and released at the end.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Optional

import torch

from r1mega.bridge.plan import SyncPlan, pack_bucket


@dataclass
class SyncStats:
    seconds: float = 0.0
    bytes: int = 0
    buckets: int = 0
    tensors: int = 0
    unloaded: list = field(default_factory=list)
    """vLLM parameters no bucket reached (reported by the workers; should be empty)."""

    @property
    def gbps(self) -> float:
        return self.bytes / max(self.seconds, 1e-9) / 1e9


class WeightBridge:
    """Syncs of one trainer's weights into one vLLM instance (see module docstring).

    ``include_mtp``: also send the multi-token-prediction layers (HF ``model.layers.{N + k}``).
    Off by default: vLLM's main DeepSeek model has no MTP layers (it loads them only as a
    separate speculative-decoding draft model, and skips such names itself), so streaming them
    would gather and move a whole extra decoder layer per sync for nothing."""

    def __init__(self, chunks, model_cfg, transport, bucket_bytes: int, fp8: bool = False,
                 dtype: Optional[torch.dtype] = None, include_mtp: bool = False):
        self.chunks = chunks
        self.model_cfg = model_cfg
        self.transport = transport
        self.bucket_bytes = bucket_bytes
        self.fp8 = fp8
        self.dtype = dtype
        self.include_mtp = include_mtp
        self.plan: Optional[SyncPlan] = None

    def stream(self):
        """The HF buckets of one sync. MTP entries are dropped from the mapping table itself
        (unless ``include_mtp``), so their tensors are neither gathered nor sent; every rank
        builds the same table, so the collectives stay matched."""
        from r1mega.convert.export_stream import iter_hf_buckets
        from r1mega.convert.load_hf import mapping_options

        opts = mapping_options(self.model_cfg, self.chunks)
        opts = dataclasses.replace(opts, include_mtp=opts.include_mtp and self.include_mtp)
        return iter_hf_buckets(self.chunks, self.model_cfg, bucket_bytes=self.bucket_bytes, fp8=self.fp8,
                               dtype=self.dtype, opts=opts)

    @torch.no_grad()
    def sync(self, llm) -> SyncStats:
        t0 = time.perf_counter()
        driver = self.transport.is_driver
        recording = self.plan is None
        plan = SyncPlan() if recording else self.plan
        self.transport.setup(llm)
        if driver:
            if recording:
                llm.collective_rpc("r1_set_plan", args=({"buckets": []},))
            llm.collective_rpc("r1_begin_sync")
        stats, buf = SyncStats(), None
        for index, bucket in enumerate(self.stream()):
            spec = plan.append(bucket) if recording else plan.check(index, bucket)
            stats.buckets += 1
            stats.tensors += len(bucket)
            stats.bytes += sum(t.nbytes for t in spec.tensors)
            if not self.transport.participates:
                continue
            if buf is None or buf.numel() < spec.nbytes:
                buf = torch.empty(max(spec.nbytes, plan.max_bucket_bytes), dtype=torch.uint8,
                                  device=bucket[0][1].device)
            flat = pack_bucket(bucket, spec, out=buf[:spec.nbytes])
            if driver and recording:
                llm.collective_rpc("r1_extend_plan", args=(SyncPlan([spec]).to_dict(),))
            self.transport.send(llm, index, flat)
        if not recording and stats.buckets != len(plan.buckets):
            raise ValueError(f"weight sync: {stats.buckets} buckets streamed, the recorded plan has "
                             f"{len(plan.buckets)} (the model's tensors changed between syncs)")
        if driver:
            stats.unloaded = llm.collective_rpc("r1_finish_sync")[0]
        del buf
        self.transport.close()
        self.plan = plan
        stats.seconds = time.perf_counter() - t0
        return stats
