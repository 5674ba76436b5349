"""How a packed bucket reaches vLLM's workers: CUDA IPC (same GPUs) or NCCL (other GPUs).

Both transports move one flat uint8 buffer per bucket (:func:`r1mega.bridge.plan.pack_bucket`)
and then call the worker extension (:mod:`r1mega.bridge.worker`) through ``collective_rpc``.

:class:`IPCTransport` (colocated; vLLM's workers run on trainer GPUs). Every trainer rank
already holds the whole bucket (the export stream is replicated), so each rank exports a CUDA
IPC handle of *its* buffer; the handles of one rollout group (the trainer ranks whose GPUs one
vLLM instance spans) are gathered to the group's leader, which calls ``r1_load_ipc`` with a
``{gpu uuid: handle}`` map. Each worker opens the handle of its own GPU: the bytes never leave
the device. The call returns after every worker has loaded and synchronized, then the group
passes a barrier so no rank reuses its buffer early.

:class:`NCCLTransport` (separate GPUs). Trainer rank 0 and the vLLM workers form a private
NCCL communicator (vLLM's ``StatelessProcessGroup`` + ``PyNcclCommunicator``: it does not
touch either side's ``torch.distributed`` world); rank 0 broadcasts each bucket while a helper
thread runs the matching ``r1_load_nccl`` RPC, since the RPC blocks until the workers have
received. Other trainer ranks only take part in producing the stream.
"""

from __future__ import annotations

import pickle

import socket
import threading
from typing import Optional

import torch
import torch.distributed as dist


class IPCTransport:
    name = "cuda_ipc"

    def __init__(self, group=None, is_driver: bool = True):
        self.group = group
        """torch.distributed group of this rank's rollout group (None: a single process)."""
        self.is_driver = is_driver
        """True on the rank that owns the vLLM instance (calls collective_rpc)."""
        self.participates = True

    def setup(self, llm) -> None:
        return None

    def send(self, llm, index: int, flat: torch.Tensor) -> None:
        from torch.multiprocessing.reductions import reduce_tensor

        torch.cuda.current_stream().synchronize()  # the bytes are written before anyone reads them
        uuid = str(torch.cuda.get_device_properties(flat.device).uuid)
        handles = {uuid: reduce_tensor(flat)[1]}
        if self.group is not None and dist.get_world_size(self.group) > 1:
            parts: list = [None] * dist.get_world_size(self.group)
            dist.all_gather_object(parts, handles, group=self.group)
            handles = {k: v for p in parts for k, v in p.items()}
        if self.is_driver:
            # vLLM's RPC encoder is msgpack: the handles (which hold torch classes) travel pickled
            llm.collective_rpc("r1_load_ipc", args=(index, pickle.dumps(handles)))
        if self.group is not None and dist.get_world_size(self.group) > 1:
            dist.barrier(group=self.group)

    def close(self) -> None:
        torch.cuda.ipc_collect()


class NCCLTransport:
    name = "nccl"

    def __init__(self, is_driver: bool, num_workers: int, host: str = "127.0.0.1"):
        self.is_driver = is_driver
        self.participates = is_driver
        self.num_workers = num_workers
        self.host = host
        self.comm = None

    def setup(self, llm) -> None:
        """Build the trainer-rank-0 + workers communicator (driver only; once)."""
        if not self.is_driver or self.comm is not None:
            return
        from vllm.distributed.device_communicators.pynccl import PyNcclCommunicator
        from vllm.distributed.utils import StatelessProcessGroup

        port = _free_port(self.host)
        world = self.num_workers + 1
        worker_side = _Background(lambda: llm.collective_rpc("r1_nccl_init", args=(self.host, port, world, 1)))
        group = StatelessProcessGroup.create(host=self.host, port=port, rank=0, world_size=world)
        self.comm = PyNcclCommunicator(group, device=torch.cuda.current_device())
        worker_side.join()

    def send(self, llm, index: int, flat: torch.Tensor) -> None:
        if not self.is_driver:
            return
        receiver = _Background(lambda: llm.collective_rpc("r1_load_nccl", args=(index,)))
        self.comm.broadcast(flat, src=0, stream=torch.cuda.current_stream())
        torch.cuda.current_stream().synchronize()
        receiver.join()

    def close(self) -> None:
        self.comm = None


class _Background:
    """Run ``fn`` in a thread; ``join`` re-raises its exception."""

    def __init__(self, fn):
        self.error: Optional[BaseException] = None
        self.result = None

        def target():
            try:
                self.result = fn()
            except BaseException as e:  # noqa: BLE001 - re-raised in join
                self.error = e

        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()

    def join(self):
        self.thread.join()
        if self.error is not None:
            raise self.error
        return self.result


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]
