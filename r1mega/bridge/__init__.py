"""The weight bridge: the trainer's sharded Megatron weights into vLLM's workers, every step.

Split the way Megatron-Core's ``resharding`` package splits it:

``plan``       *what* moves: the ordered buckets of ``(hf_name, shape, dtype)`` with their byte
               offsets in one flat buffer per bucket. Recorded on the first sync from the
               stream itself, checked on every later sync, and handed to vLLM's workers once.
``transport``  *how* bytes move: CUDA IPC handles when vLLM shares the trainer's GPUs
               (colocated), an NCCL broadcast from trainer rank 0 when vLLM has its own GPUs.
``execute``    *when*: start a layer-wise reload in every vLLM worker, stream the buckets from
               :func:`r1mega.convert.iter_hf_buckets` (TP/EP all-gather, PP broadcast, optional
               FP8 block quantization) through the transport, finish the reload.
``worker``     the vLLM worker extension (``worker_extension_cls``) that receives a bucket and
               feeds it to ``model.load_weights`` -- vLLM's own loader, so vLLM does its own
               TP sharding, expert placement, QKV/gate-up stacking and FP8 post-processing.

Bounded memory: beyond its model shard a trainer rank holds one full HF tensor plus one
packed bucket (``rollout.vllm.bucket_mb``); a vLLM worker holds one bucket view.
"""

from r1mega.bridge.plan import BucketSpec, SyncPlan, TensorSpec, pack_bucket, unpack_bucket

__all__ = ["BucketSpec", "SyncPlan", "TensorSpec", "pack_bucket", "unpack_bucket"]
