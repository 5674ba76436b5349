"""The environment a multi-node Megatron-Core job needs, and why each variable is set.

=====================================  =========  =============================================
variable                                default    why
=====================================  =========  =============================================
CUDA_DEVICE_MAX_CONNECTIONS             1          one hardware work queue per GPU, so the
                                                   kernels Megatron issues for TP/SP
                                                   communication overlap run in issue order
                                                   (required for its comm/compute overlap)
NCCL_NVLS_ENABLE                        0          NVLink SHARP (multicast) collectives off:
                                                   they need a fabric manager set up for them
                                                   and have hung or failed on shared hosts;
                                                   set cluster.env.NCCL_NVLS_ENABLE='1' where
                                                   the cluster supports them
TORCH_SYMM_MEM_DISABLE_MULTICAST        1          the same for PyTorch symmetric memory
NVSHMEM_DISABLE_NVLS                    1          the same for NVSHMEM (DeepEP's transport)
TORCH_NCCL_ASYNC_ERROR_HANDLING         1          a failed or timed-out collective tears the
                                                   process down instead of hanging the job
TORCH_NCCL_AVOID_RECORD_STREAMS         1          frees async-collective buffers as soon as
                                                   the collective ends (less memory held)
NCCL_DEBUG                              WARN       NCCL problems reach the log, chatter doesn't
PYTHONUNBUFFERED                        1          logs appear as they are written
HYDRA_FULL_ERROR                        1          the full traceback in the job log
LOGLEVEL                                INFO       torchrun's own log level (pinned, so a
                                                   rendered script does not depend on the
                                                   submitting shell)
=====================================  =========  =============================================

``cluster.env`` overrides any of these and adds more (``NCCL_IB_HCA``, ``NCCL_SOCKET_IFNAME``
and other fabric settings are site-specific and belong there). Deliberately *not* set:
``PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True`` (it reduces fragmentation but vLLM's sleep
mode allocator refuses to run with it; set it per cluster when the rollout engine is not
colocated).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DEFAULTS: dict[str, str] = {
    "CUDA_DEVICE_MAX_CONNECTIONS": "1",
    "NCCL_NVLS_ENABLE": "0",
    "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1",
    "NVSHMEM_DISABLE_NVLS": "1",
    "TORCH_NCCL_ASYNC_ERROR_HANDLING": "1",
    "TORCH_NCCL_AVOID_RECORD_STREAMS": "1",
    "NCCL_DEBUG": "WARN",
    "PYTHONUNBUFFERED": "1",
    "HYDRA_FULL_ERROR": "1",
    "LOGLEVEL": "INFO",
}


def job_env(overrides: dict[str, str]) -> dict[str, str]:
    """The defaults with ``cluster.env`` on top, values as strings, in a stable order."""
    env = dict(DEFAULTS)
    env.update({str(k): str(v) for k, v in overrides.items()})
    return env


def local_env(overrides: dict[str, str]) -> dict[str, str]:
    """``job_env`` plus what a local run needs to find torchrun and this checkout.

    The local executor starts ``torchrun`` from this Python's ``bin`` directory (a venv need not
    be activated) and puts the directory holding the ``r1mega`` package on ``PYTHONPATH``, so a
    source checkout runs without ``pip install -e .``.
    """
    env = job_env(overrides)
    bin_dir = str(Path(sys.executable).parent)
    env.setdefault("PATH", os.pathsep.join([bin_dir, os.environ.get("PATH", "")]))
    repo = str(Path(__file__).resolve().parents[2])
    paths = [repo] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env.setdefault("PYTHONPATH", os.pathsep.join(paths))
    return env
