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
7. A handful of modules allocate small bookkeeping tensors with a literal ``device="cuda"``
   (loss scale, found-inf flag, clip-grad norms, the schedules' token counters, a DDP warm-up
   buffer). In exactly the modules listed in :data:`CUDA_LITERAL_MODULES`, the module-global
   name ``torch`` is replaced by :class:`_CpuTorch`, a proxy that forwards everything to
   ``torch`` but rewrites ``device="cuda"`` to CPU in tensor factory functions.
8. ``clip_grad_by_total_norm_fp32`` asserts ``param.grad.type() == 'torch.cuda.FloatTensor'``;
   the optimizer module's reference to it is replaced by :func:`_clip_grad_by_total_norm_fp32`,
   the same scaling (``grad *= max_norm / (total_norm + 1e-6)`` when that is < 1) without it.

9. ``WrappedTorchNorm`` (the local spec's norm without Apex) asserts
   ``not config.sequence_parallel``, which blocks every MoE layout with TP > 1 (Megatron requires
   sequence parallelism there). The norm is built exactly as before and its parameters are
   tagged ``sequence_parallel`` like Apex/TE norms, so ``finalize_model_grads`` all-reduces their
   gradients over TP.
10. ``maybe_move_tensor_to_cpu(..., as_numpy=True)`` only converts CUDA tensors; on CPU the MoE
   all-to-all dispatcher then hands tensors to ``all_to_all_single`` as split sizes, which
   gloo rejects. The redirect converts CPU tensors to numpy when asked, as it does for CUDA ones.
11. ``LanguageModule.setup_embeddings_and_output_layer`` moves the tied embedding of a pipelined
   model to CUDA (``weight.data.cuda()``) before all-reducing it between the first and last
   stage. While that method runs, ``Tensor.cuda`` returns the tensor itself.

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


CUDA_LITERAL_MODULES = (
    "megatron.core.optimizer.optimizer",
    "megatron.core.optimizer.clip_grads",
    "megatron.core.optimizer.grad_scaler",
    "megatron.core.pipeline_parallel.schedules",
    "megatron.core.distributed.param_and_grad_buffer",
    "megatron.core.utils",
)
_FACTORIES = ("tensor", "zeros", "ones", "empty", "full", "arange", "zeros_like", "ones_like")


def _to_cpu_device(device):
    if device is None:
        return None
    if isinstance(device, str) and device.startswith("cuda"):
        return "cpu"
    if isinstance(device, torch.device) and device.type == "cuda":
        return torch.device("cpu")
    return device


class _CpuTorch:
    """``torch`` for modules that hard-code ``device="cuda"``: factories allocate on CPU."""

    def __getattr__(self, name):
        attr = getattr(torch, name)
        if name in _FACTORIES:

            def factory(*args, **kwargs):
                if "device" in kwargs:
                    kwargs["device"] = _to_cpu_device(kwargs["device"])
                return attr(*args, **kwargs)

            return factory
        return attr


def _clip_grad_by_total_norm_fp32(parameters, max_norm, total_norm, use_decoupled_grad=False):
    """Megatron's clip-by-total-norm without the CUDA tensor-type assertion (redirect 8)."""
    if isinstance(parameters, torch.Tensor):
        parameters = [parameters]
    attr = "decoupled_grad" if use_decoupled_grad else "grad"
    grads = [getattr(p, attr) for p in parameters if getattr(p, attr, None) is not None]
    clip_coeff = max_norm / (total_norm + 1.0e-6)
    if clip_coeff < 1.0:
        for g in grads:
            g.detach().mul_(clip_coeff)


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
    import importlib
    import importlib.util

    for name in CUDA_LITERAL_MODULES:
        importlib.import_module(name).torch = _CpuTorch()
    APPLIED.append("cuda_literal_factories")
    from megatron.core.optimizer import optimizer as moptimizer

    moptimizer.clip_grad_by_total_norm_fp32 = _clip_grad_by_total_norm_fp32
    APPLIED.append("clip_grad_by_total_norm_fp32")

    if importlib.util.find_spec("transformer_engine") is None:
        from megatron.core.transformer import multi_latent_attention

        multi_latent_attention.HAVE_TE = False
        APPLIED.append("mla_have_te")

    _allow_sequence_parallel_torch_norm()
    APPLIED.append("torch_norm_sequence_parallel")
    from megatron.core.transformer.moe import token_dispatcher

    moe_utils.maybe_move_tensor_to_cpu = _maybe_move_tensor_to_cpu
    token_dispatcher.maybe_move_tensor_to_cpu = _maybe_move_tensor_to_cpu
    APPLIED.append("maybe_move_tensor_to_cpu")
    _keep_tied_embedding_on_cpu()
    APPLIED.append("tied_embedding_sync")
    return True


def _keep_tied_embedding_on_cpu() -> None:
    """Redirect 11: the first/last-stage embedding sync runs with ``Tensor.cuda`` as identity."""
    from megatron.core.models.common.language_module.language_module import LanguageModule

    original = LanguageModule.setup_embeddings_and_output_layer

    def setup_embeddings_and_output_layer(self):
        cuda = torch.Tensor.cuda
        torch.Tensor.cuda = lambda tensor, *args, **kwargs: tensor
        try:
            return original(self)
        finally:
            torch.Tensor.cuda = cuda

    LanguageModule.setup_embeddings_and_output_layer = setup_embeddings_and_output_layer


def _allow_sequence_parallel_torch_norm() -> None:
    """Redirect 9: build torch norms under sequence parallelism, tagged like TE/Apex norms."""
    from megatron.core.transformer.torch_norm import WrappedTorchNorm

    original = WrappedTorchNorm.__new__

    def build(cls, config, hidden_size, eps=1e-5, **kwargs):
        sequence_parallel = config.sequence_parallel
        config.sequence_parallel = False
        try:
            norm = original(cls, config, hidden_size, eps, **kwargs)
        finally:
            config.sequence_parallel = sequence_parallel
        for param in norm.parameters():
            param.sequence_parallel = sequence_parallel
        return norm

    WrappedTorchNorm.__new__ = build


def _maybe_move_tensor_to_cpu(tensor, as_numpy: bool = False, record_stream: bool = False):
    """Redirect 10: Megatron's helper, but CPU tensors also become numpy arrays when asked."""
    if torch.is_tensor(tensor) and as_numpy:
        return tensor.detach().cpu().numpy()
    if torch.is_tensor(tensor):
        return tensor.cpu()
    return tensor


def reset_rng_tracker() -> None:
    """Give a fresh CPU tracker (Megatron's ``model_parallel_cuda_manual_seed`` adds seeds once)."""
    from megatron.core.tensor_parallel import random as mrandom

    if APPLIED:
        mrandom._CUDA_RNG_STATE_TRACKER = _cpu_tracker_class()()
        mrandom._CUDA_RNG_STATE_TRACKER_INITIALIZED = True
