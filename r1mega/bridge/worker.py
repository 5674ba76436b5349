"""The vLLM side of the bridge: a worker extension that receives buckets and loads them.

vLLM mixes this class into every one of its GPU workers when the engine is built with
``worker_extension_cls="r1mega.bridge.worker.WeightSyncExtension"``; the trainer calls its
methods through ``LLM.collective_rpc("r1_...")``, so they run in the worker processes with
``self`` being vLLM's ``Worker`` (``self.model_runner``, ``self.model_config``, ``self.device``).

A sync is a *layer-wise reload* (vLLM's ``initialize_layerwise_reload`` /
``finalize_layerwise_reload``): every weight arrives in checkpoint (HF) format and goes
through the model's own ``load_weights`` -- vLLM shards it for its tensor parallelism, stacks
q/k/v and gate/up, places experts -- and each layer is re-processed once all its weights are
in (FP8 scale handling, and MLA's absorbed ``W_UK``/``W_UV`` recomputed from ``kv_b_proj``:
copying into parameters alone would leave those stale). The processed values are copied into
the original storage, so CUDA graphs captured at start-up stay valid.

Nothing here imports vLLM at module level: the class must be importable where vLLM is not.
"""

from __future__ import annotations

import torch

from r1mega.bridge.plan import SyncPlan, unpack_bucket


CHECKPOINTLESS = ("k_scale", "v_scale", "q_scale", "prob_scale", ".W_UK_T", ".W_UV")
"""Parameters no checkpoint holds: attention quantization scales vLLM creates anyway, and MLA's
absorbed up-projections (W_UK_T, W_UV), which vLLM derives from kv_b_proj after loading."""


class WeightSyncExtension:
    """Methods named ``r1_*`` so they cannot clash with vLLM's own worker methods."""

    def _r1_model(self):
        runner = self.model_runner
        return runner.get_model() if hasattr(runner, "get_model") else runner.model

    def r1_device_uuid(self) -> str:
        """This worker's physical GPU (what IPC handles are keyed by)."""
        return str(torch.cuda.get_device_properties(torch.cuda.current_device()).uuid)

    def r1_set_plan(self, plan: dict) -> int:
        self._r1_plan = SyncPlan.from_dict(plan)
        return len(self._r1_plan.buckets)

    def r1_extend_plan(self, plan: dict) -> int:
        """Append buckets to the plan (the first sync ships each bucket's spec before it)."""
        self._r1_plan.buckets += SyncPlan.from_dict(plan).buckets
        return len(self._r1_plan.buckets)

    def r1_begin_sync(self) -> None:
        from vllm.model_executor.model_loader.reload import initialize_layerwise_reload

        self._r1_loaded = set()
        initialize_layerwise_reload(self._r1_model())

    def _r1_load(self, index: int, flat: torch.Tensor) -> int:
        # Copies, not views: vLLM's layer-wise reload defers a layer's copy until all of its
        # weights have arrived, and a layer can straddle two buckets, while the sender reuses or
        # frees this bucket's buffer as soon as the call returns.
        weights = [(name, t.clone()) for name, t in unpack_bucket(flat, self._r1_plan.buckets[index])]
        loaded = self._r1_model().load_weights(weights)
        if loaded:
            self._r1_loaded.update(loaded)
        return len(weights)

    def r1_load_ipc(self, index: int, payload: bytes) -> int:
        """Load bucket ``index`` from the trainer's CUDA IPC handle for this worker's GPU
        (``payload``: pickled {device uuid: reduce_tensor args}, sent by the trainer process)."""
        import pickle

        from torch.multiprocessing.reductions import rebuild_cuda_tensor

        handles = pickle.loads(payload)  # noqa: S301 - from our own trainer process

        uuid = self.r1_device_uuid()
        if uuid not in handles:
            raise ValueError(f"weight sync: no trainer rank shares a bucket on GPU {uuid} (trainer GPUs: "
                             f"{sorted(handles)}); colocated mode needs vLLM's GPUs to be trainer GPUs")
        args = list(handles[uuid])
        args[6] = torch.cuda.current_device()  # reduce_tensor records the sender's device index
        flat = rebuild_cuda_tensor(*args)
        n = self._r1_load(index, flat)
        torch.cuda.synchronize()  # the trainer frees the buffer once this call returns
        del flat
        return n

    def r1_nccl_init(self, host: str, port: int, world_size: int, rank_offset: int) -> int:
        """Join the trainer's NCCL group (trainer rank 0 is group rank 0)."""
        from vllm.distributed.device_communicators.pynccl import PyNcclCommunicator
        from vllm.distributed.utils import StatelessProcessGroup

        rank = rank_offset + self.rank
        group = StatelessProcessGroup.create(host=host, port=port, rank=rank, world_size=world_size)
        self._r1_nccl = PyNcclCommunicator(group, device=torch.cuda.current_device())
        return rank

    def r1_load_nccl(self, index: int) -> int:
        """Receive bucket ``index`` by NCCL broadcast from the trainer and load it."""
        spec = self._r1_plan.buckets[index]
        flat = torch.empty(spec.nbytes, dtype=torch.uint8, device=torch.cuda.current_device())
        self._r1_nccl.broadcast(flat, src=0, stream=torch.cuda.current_stream())
        n = self._r1_load(index, flat)
        torch.cuda.synchronize()
        return n

    def r1_finish_sync(self) -> list:
        """Finish the reload; returns vLLM parameter names that received nothing."""
        from vllm.model_executor.model_loader.reload import finalize_layerwise_reload

        model = self._r1_model()
        finalize_layerwise_reload(model, self.model_config)
        torch.cuda.synchronize()
        return sorted(n for n, _ in model.named_parameters()
                      if n not in self._r1_loaded and not n.endswith(CHECKPOINTLESS))
