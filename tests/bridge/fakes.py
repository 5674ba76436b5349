"""A stand-in for ``vllm.LLM`` in unit tests only (the real one runs in tests/gpu/test_vllm_*.py).

:class:`FakeLLM` dispatches ``collective_rpc`` to a :class:`FakeWorker`, which *is* the real
bridge worker extension except for the two methods that need vLLM (begin/finish of the
layer-wise reload); its "model" records what ``load_weights`` receives.
"""

from __future__ import annotations

import torch

from r1mega.bridge.worker import WeightSyncExtension


class RecordingModel:
    def __init__(self):
        self.weights: dict[str, torch.Tensor] = {}

    def load_weights(self, weights):
        names = set()
        for name, t in weights:
            self.weights[name] = t.clone()
            names.add(name)
        return names


class _Runner:
    def __init__(self, model):
        self.model = model


class FakeWorker(WeightSyncExtension):
    def __init__(self):
        self.model_runner = _Runner(RecordingModel())
        self.calls: list[str] = []

    def r1_begin_sync(self):
        self._r1_loaded = set()

    def r1_finish_sync(self):
        return []

    def r1_load_local(self, index, flat):
        return self._r1_load(index, flat.clone())


class FakeLLM:
    def __init__(self):
        self.worker = FakeWorker()

    def collective_rpc(self, method, timeout=None, args=(), kwargs=None):
        self.worker.calls.append(method)
        return [getattr(self.worker, method)(*args, **(kwargs or {}))]


class LocalTransport:
    """Hands the packed buffer to the fake worker in-process (the byte layout is the real one)."""

    name = "local"
    is_driver = True
    participates = True

    def setup(self, llm):
        return None

    def send(self, llm, index, flat):
        llm.collective_rpc("r1_load_local", args=(index, flat))

    def close(self):
        return None
