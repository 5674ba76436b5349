"""Shared test fixtures: CPU redirects for Megatron, free ports, gloo process spawning."""

from __future__ import annotations

import os
import socket

import pytest
import torch

os.environ.setdefault("NCCL_NVLS_ENABLE", "0")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
