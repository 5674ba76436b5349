"""Run Megatron-Core 0.16 on machines without CUDA.

Megatron-Core is written for GPUs and calls CUDA in a few places that have nothing to do
with the maths: picking the current device, creating side streams, tracking the per-rank
dropout RNG, and one optional Transformer Engine GEMM in the MoE router. On a CPU-only
build of PyTorch each of those raises, although the model itself (local spec, fp32) is
plain PyTorch and runs fine.

``enable()`` redirects exactly these calls, and nothing else:

1. ``torch.cuda.current_device`` -> ``torch.device("cpu")``. Megatron passes the result as
   ``device=`` when allocating buffers (YaRN rope cache, MoE token counters, DDP buffers).
2. ``torch.cuda.Stream`` / ``Event`` / ``current_stream`` / ``stream`` -> no-op stream and
   (already complete) event objects. Used for overlap of communication, which is synchronous on CPU anyway.
3. The CUDA RNG tracker (``tensor_parallel.random``) -> :class:`CpuRNGStatesTracker`, which
   forks the CPU generator instead of the CUDA one. The semantics (named, seeded streams
   for tensor-parallel regions) are the same, so TP dropout stays reproducible.
4. ``moe_utils.te_general_gemm`` is referenced but left undefined when Transformer Engine is
   absent; it is set to ``None`` so the router takes its plain ``torch`` path.
5. ``torch.cuda.synchronize`` / ``torch.cuda.empty_cache`` -> no-ops (timers, memory hygiene).
6. Without Transformer Engine, ``megatron.core.extensions.transformer_engine`` fills the
   missing package with ``MagicMock`` objects, so ``multi_latent_attention`` imports "TE"
   successfully and sets ``HAVE_TE = True``; its ``isinstance(x, TELinear)`` checks then
   raise. The flag is set back to ``False`` when ``transformer_engine`` cannot be imported.

The shim refuses to run on a Megatron-Core version it was not checked against and does
nothing at all when CUDA is available. Everything it changes is recorded in
:data:`APPLIED` so tests can assert on it.
"""

from __future__ import annotations

import contextlib

import torch

SUPPORTED_MCORE = ("0.16.",)
APPLIED: list[str] = []


class _NoOpEvent:
    """Stands in for ``torch.cuda.Event``: already complete."""

    def __init__(self, *args, **kwargs):
        pass

    def synchronize(self):
        return None

    def query(self):
        return True

    def record(self, *args, **kwargs):
        return None

    def wait(self, *args, **kwargs):
        return None


class _NoOpStream:
    """Stands in for ``torch.cuda.Stream``: every method is a no-op, waits return at once."""

    def __init__(self, *args, **kwargs):
        pass

    def wait_stream(self, *args, **kwargs):
        return None

    def wait_event(self, *args, **kwargs):
        return None

    def record_event(self, *args, **kwargs):
        return _NoOpEvent()

    def synchronize(self):
        return None

    def query(self):
        return True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _cpu_tracker_class():
    from megatron.core.tensor_parallel import random as mrandom

    class CpuRNGStatesTracker(mrandom.CudaRNGStatesTracker):
        """Megatron's RNG tracker, over the CPU default generator instead of CUDA's."""

        def add(self, name, seed):
            self._is_initialized = True
            if seed in self.seeds_:
                raise Exception(f"seed {seed} already exists")
            if name in self.states_:
                raise Exception(f"rng state {name} already exists")
            self.seeds_.add(seed)
            gen = torch.Generator()
            gen.manual_seed(seed)
            self.states_[name] = gen.get_state()

        @contextlib.contextmanager
        def fork(self, name=mrandom._MODEL_PARALLEL_RNG_TRACKER_NAME):
            if name not in self.states_:
                raise Exception(f"rng state {name} is not added")
            outer = torch.get_rng_state()
            torch.set_rng_state(self.states_[name])
            try:
                yield
            finally:
                self.states_[name] = torch.get_rng_state()
                torch.set_rng_state(outer)

    return CpuRNGStatesTracker


def enable() -> bool:
    """Apply the redirects once. Returns True if applied, False if CUDA made them unneeded."""
    if torch.cuda.is_available():
        return False
    if APPLIED:
        return True
    import megatron.core

    version = megatron.core.__version__
    if not version.startswith(SUPPORTED_MCORE):
        raise RuntimeError(
            f"r1mega.compat.cpu was checked against megatron-core {SUPPORTED_MCORE}, found "
            f"{version}; re-check the redirects listed in r1mega/compat/cpu.py before extending it"
        )

    torch.cuda.current_device = lambda: torch.device("cpu")
    torch.cuda.Stream = _NoOpStream
    torch.cuda.Event = _NoOpEvent
    torch.cuda.current_stream = lambda *a, **k: _NoOpStream()
    torch.cuda.stream = lambda *a, **k: contextlib.nullcontext()
    torch.cuda.synchronize = lambda *a, **k: None
    torch.cuda.empty_cache = lambda: None
    APPLIED.extend(["current_device", "Stream", "synchronize", "empty_cache"])

    from megatron.core.tensor_parallel import random as mrandom

    mrandom._CUDA_RNG_STATE_TRACKER = _cpu_tracker_class()()
    mrandom._CUDA_RNG_STATE_TRACKER_INITIALIZED = True
    APPLIED.append("rng_tracker")

    from megatron.core.transformer.moe import moe_utils

    if not hasattr(moe_utils, "te_general_gemm"):
        moe_utils.te_general_gemm = None
        APPLIED.append("te_general_gemm")
    import importlib.util

    if importlib.util.find_spec("transformer_engine") is None:
        from megatron.core.transformer import multi_latent_attention

        multi_latent_attention.HAVE_TE = False
        APPLIED.append("mla_have_te")
    return True


def reset_rng_tracker() -> None:
    """Give a fresh CPU tracker (Megatron's ``model_parallel_cuda_manual_seed`` adds seeds once)."""
    from megatron.core.tensor_parallel import random as mrandom

    if APPLIED:
        mrandom._CUDA_RNG_STATE_TRACKER = _cpu_tracker_class()()
        mrandom._CUDA_RNG_STATE_TRACKER_INITIALIZED = True
