"""``rollout.engine=vllm``: generation with vLLM's offline ``LLM``, fed by the weight bridge.

Life of the engine (every trainer rank builds one; only leaders own a vLLM instance, see
:mod:`r1mega.rollout.vllm_placement`):

1. start: write an HF model directory (config.json + tokenizer, no weights), start vLLM on it
   with ``load_format="dummy"``, ``worker_extension_cls`` = the bridge's worker extension,
   ``logprobs_mode="processed_logprobs"`` and, colocated, ``enable_sleep_mode``;
2. :meth:`update_weights`: stream the trainer's weights in (:mod:`r1mega.bridge`);
3. :meth:`generate`: wake vLLM if it sleeps, generate, and (colocated) put it back to sleep
   at ``rollout.vllm.sleep_level`` so training gets the memory back. After a level-2 sleep the
   weights are gone: the next :meth:`generate` re-syncs them first (a collective, like every
   call here: all trainer ranks call ``generate`` and ``update_weights`` together).

Log-probs. ``processed_logprobs`` are the log-softmax of the logits after vLLM's logits
processors and temperature (and top-k/top-p, when set), over the full vocabulary: with
``top_p=1, top_k=-1`` (GRPO's defaults) that is exactly the quantity the trainer recomputes,
the interface's definition in :mod:`r1mega.rollout.base`; with truncation on they are of the
renormalized truncated distribution. Vocabulary rows beyond ``len(tokenizer)`` (Megatron's
padding) are excluded with ``allowed_token_ids``, as the trainer masks them.
"""

from __future__ import annotations

import os
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import torch

from r1mega.config.errors import ConfigError
from r1mega.rollout.base import Generation, SamplingParams

EXTENSION = "r1mega.bridge.worker.WeightSyncExtension"


@contextmanager
def _visible_devices(devices: list):
    """CUDA_VISIBLE_DEVICES for the processes vLLM spawns (this process's CUDA is already up)."""
    old = os.environ.get("CUDA_VISIBLE_DEVICES")
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(devices)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = old


def llm_kwargs(rollout, model_dir: Path, max_model_len: int, seed: int) -> dict:
    """Keyword arguments of ``vllm.LLM`` for a rollout config (also used by the benchmarks)."""
    kw = dict(model=str(model_dir), tokenizer=str(model_dir), dtype="bfloat16", load_format="dummy",
              tensor_parallel_size=rollout.vllm.tp, gpu_memory_utilization=rollout.vllm.gpu_memory_utilization,
              enforce_eager=rollout.vllm.enforce_eager, enable_sleep_mode=rollout.vllm.colocate,
              max_model_len=max_model_len, max_num_seqs=rollout.vllm.max_num_seqs, seed=seed,
              worker_extension_cls=EXTENSION, logprobs_mode="processed_logprobs", generation_config="vllm",
              enable_prefix_caching=True)
    if rollout.vllm.attention_backend:
        kw["attention_config"] = {"backend": rollout.vllm.attention_backend}
    return kw


def request_seed(seed: int, calls: int, key: tuple) -> int:
    dp_rank, index = key
    return (seed * 1_000_003 + calls * 7919 + dp_rank * 104_729 + index) % (2**31 - 1)


class VLLMEngine:
    def __init__(self, cfg, tm, tokenizer, chunks: Optional[list] = None):
        """``tm``: the trainer's TrainModel (GRPO), or None with ``chunks`` (eval/sampling stages)."""
        import importlib.util

        if importlib.util.find_spec("vllm") is None:
            raise ConfigError("rollout.engine=vllm needs the vllm package (pip install 'r1mega[vllm]' on a GPU "
                             "machine, see docs/vllm.md); use rollout.engine=megatron otherwise")
        if not torch.cuda.is_available():
            raise ConfigError("rollout.engine=vllm needs a CUDA GPU; use rollout.engine=megatron on CPU")
        from r1mega.bridge.execute import WeightBridge
        from r1mega.bridge.transport import IPCTransport, NCCLTransport
        from r1mega.rollout.vllm_model_dir import write_model_dir
        from r1mega.rollout.vllm_placement import plan_placement

        r = cfg.rollout
        self.cfg, self.rollout, self.tokenizer = cfg, r, tokenizer
        self.chunks = tm.chunks if tm is not None else chunks
        self.vocab_limit = len(tokenizer)
        self.calls = 0
        self.seed = cfg.trainer.seed
        self.colocate = r.vllm.colocate
        self.placement = plan_placement(r.vllm.tp, r.vllm.colocate, list(r.vllm.gpus), torch.cuda.current_device(),
                                        torch.cuda.device_count())
        transport = (IPCTransport(self.placement.group, self.placement.is_leader) if r.vllm.colocate
                     else NCCLTransport(self.placement.rank == 0, r.vllm.tp))
        self.bridge = WeightBridge(self.chunks, cfg.model, transport, r.vllm.bucket_mb * 2**20, fp8=r.vllm.fp8,
                                   dtype=torch.bfloat16)
        self.max_model_len = r.vllm.max_model_len or min(
            cfg.model.max_position_embeddings, cfg.data.seq_length + max(r.max_tokens, cfg.evaluation.max_tokens or 0))
        self.llm = None
        self.sleeping: set = set()  # vLLM memory tags released by sleep ("weights", "kv_cache")
        self.weights_valid = False  # vLLM holds the trainer's current weights
        self.last_sync = None
        if self.placement.is_leader:
            model_dir = Path(r.vllm.model_dir or Path(cfg.run_dir) / "vllm_model") / f"rank{self.placement.rank}"
            write_model_dir(model_dir, cfg.model, tokenizer, fp8=r.vllm.fp8)
            self.llm = self._start(model_dir)

    @classmethod
    def from_chunks(cls, cfg, chunks: list, tokenizer) -> "VLLMEngine":
        """An engine serving ``chunks`` (already loaded), weights synced once (eval/sampling)."""
        engine = cls(cfg, None, tokenizer, chunks=chunks)
        engine.update_weights()
        return engine

    def _start(self, model_dir: Path):
        from vllm import LLM

        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "1")  # CUDA IPC needs another process
        with _visible_devices(self.placement.devices):
            return LLM(**llm_kwargs(self.rollout, model_dir, self.max_model_len, self.seed))

    # --- memory ---------------------------------------------------------------------------
    # The state below changes identically on every rank (non-leaders own no vLLM), so the
    # collective re-sync in wake_up happens on all ranks or none.
    def sleep(self) -> None:
        """Release vLLM's GPU memory (colocated mode only; a no-op otherwise)."""
        if not self.colocate or self.sleeping == {"weights", "kv_cache"}:
            return
        if self.sleeping:  # half awake after a sync: finish waking, then sleep as a whole
            self._wake(set(self.sleeping))
        if self.llm is not None:
            self.llm.sleep(level=self.rollout.vllm.sleep_level)
        self.sleeping = {"weights", "kv_cache"}
        if self.rollout.vllm.sleep_level == 2:
            self.weights_valid = False

    def wake_up(self) -> None:
        """Everything back on the GPU with the trainer's current weights (re-synced if dropped)."""
        if "weights" in self.sleeping:
            self._wake({"weights"})
        if not self.weights_valid:
            self._sync()
        if "kv_cache" in self.sleeping:
            self._wake({"kv_cache"})

    def _wake(self, tags: set) -> None:
        if self.llm is not None:
            # blocks the trainer freed but PyTorch's caching allocator still holds are invisible
            # to vLLM's allocator: hand them back before it takes its weights or KV cache
            import torch

            torch.cuda.empty_cache()
            self.llm.wake_up(sorted(tags))
        self.sleeping -= tags

    # --- sampling state -------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"calls": self.calls}

    def load_state_dict(self, state: dict) -> None:
        self.calls = int(state["calls"])

    # --- weights --------------------------------------------------------------------------
    def update_weights(self) -> None:
        """Push the trainer's weights (the KV cache stays released until the next generate)."""
        if "weights" in self.sleeping:
            self._wake({"weights"})
        self._sync()

    def _sync(self) -> None:
        stats = self.bridge.sync(self.llm)
        if stats.unloaded and self.last_sync is None:
            warnings.warn(f"weight sync: {len(stats.unloaded)} vLLM parameters received no weights (checkpoint-less "
                          f"scales are expected, anything else is a mapping gap): {stats.unloaded[:12]}")
        if self.llm is not None and not self.sleeping:
            self.llm.reset_prefix_cache()  # cached KV was computed with the old weights
        self.weights_valid = True
        self.last_sync = stats

    # --- generation -----------------------------------------------------------------------
    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[Generation]:
        from megatron.core import parallel_state as ps

        from r1mega.rollout.vllm_placement import distribute

        calls = self.calls
        self.calls += 1
        self.wake_up()
        dp_rank = ps.get_data_parallel_rank() if ps.model_parallel_is_initialized() else 0
        out = distribute(self.placement, dp_rank, prompts, lambda p, keys: self._run(p, keys, params, calls))
        if self.colocate:
            self.sleep()
        return out

    def sampling_params(self, params: SamplingParams, seed: Optional[int]):
        from vllm import SamplingParams as VSP

        vocab = self.cfg.model.vocab_size
        return VSP(n=1, temperature=params.temperature, top_p=params.top_p, top_k=max(params.top_k, 0),
                   max_tokens=params.max_tokens, stop=list(params.stop) or None,
                   stop_token_ids=list(params.stop_token_ids) or None, seed=seed, logprobs=0,
                   include_stop_str_in_output=True, skip_special_tokens=False, detokenize=bool(params.stop),
                   allowed_token_ids=list(range(self.vocab_limit)) if self.vocab_limit < vocab else None)

    def _run(self, prompts: list, keys: list, params: SamplingParams, calls: int) -> list[Generation]:
        if not prompts:
            return []
        for i, p in enumerate(prompts):
            if not p:
                raise ValueError(f"prompt {i} is empty")
        sps = [self.sampling_params(params, request_seed(params.seed, calls, k)) for k in keys]
        outputs = self.llm.generate([{"prompt_token_ids": list(p)} for p in prompts], sps, use_tqdm=False)
        return [to_generation(list(p), o.outputs[0], self.tokenizer) for p, o in zip(prompts, outputs)]

    def shutdown(self) -> None:
        if self.llm is not None:
            del self.llm
            self.llm = None


def to_generation(prompt: list, completion, tokenizer) -> Generation:
    """A vLLM ``CompletionOutput`` as a :class:`Generation` (text decoded as the built-in engine does)."""
    tokens = list(completion.token_ids)
    if completion.logprobs is None or len(completion.logprobs) != len(tokens):
        raise RuntimeError(f"vLLM returned {0 if completion.logprobs is None else len(completion.logprobs)} "
                           f"log-prob entries for {len(tokens)} tokens")
    logps = [float(step[tok].logprob) for step, tok in zip(completion.logprobs, tokens)]
    return Generation.decoded(prompt, tokens, logps, completion.finish_reason != "length", tokenizer)
