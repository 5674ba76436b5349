"""How responses are sampled during RL and data generation (``rollout=`` group).

Evaluation sampling (temperature, top-p, k, length) is the ``evaluation`` group's
(:class:`r1mega.eval.benchmarks.EvalConfig`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from r1mega.config.errors import ConfigError


@dataclass
class VllmConfig:
    """The vLLM engine (``rollout.engine=vllm``): placement, memory, weight sync, serving options."""

    tp: int = 1
    """vLLM tensor-parallel size (independent of the trainer's layout)."""
    gpu_memory_utilization: float = 0.5
    """Share of GPU memory vLLM may take (colocated with training)."""
    colocate: bool = True
    """Colocate vLLM with training on the same GPUs (sleep during training)."""
    enforce_eager: bool = False
    """Skip CUDA-graph capture in vLLM (faster start, slower decode)."""
    gpus: list = field(default_factory=list)
    """Separate mode (``rollout.vllm.colocate=false``): physical GPU ids on this node for vLLM's
    ``tp`` workers; empty means the ``tp`` GPUs right after the trainer's local ones."""
    sleep_level: int = 2
    """Colocated mode: vLLM sleeps after every ``generate`` at this level (1: weights to host
    memory, 2: weights dropped and re-synced from the trainer before the next generation)."""
    bucket_mb: int = 512
    """Weight-sync bucket size in MiB (the most extra GPU memory one bucket costs per rank)."""
    fp8: bool = False
    """Serve FP8 (DeepSeek 128x128 block e4m3): weights are block-quantized during the sync."""
    max_model_len: Optional[int] = None
    """vLLM's context length; None means the longest prompt-plus-response the data allows
    (``data.seq_length`` plus the longest of ``rollout.max_tokens`` and
    ``evaluation.max_tokens``, capped by ``model.max_position_embeddings``)."""
    max_num_seqs: int = 256
    """Most sequences vLLM decodes at once."""
    attention_backend: Optional[str] = None
    """Force a vLLM attention backend (e.g. TRITON_MLA, FLASH_ATTN); None lets vLLM choose."""
    model_dir: Optional[str] = None
    """Where the HF-format model directory (config.json + tokenizer) for vLLM is written;
    None means ``<run dir>/vllm_model``."""

    def validate(self, prefix: str = "rollout.vllm") -> None:
        if self.tp < 1:
            raise ConfigError(f"{prefix}.tp={self.tp} must be >= 1")
        if self.sleep_level not in (1, 2):
            raise ConfigError(f"{prefix}.sleep_level={self.sleep_level} must be 1 or 2")
        if not 0 < self.gpu_memory_utilization < 1:
            raise ConfigError(f"{prefix}.gpu_memory_utilization={self.gpu_memory_utilization} must be in (0, 1)")
        if self.bucket_mb < 1:
            raise ConfigError(f"{prefix}.bucket_mb={self.bucket_mb} must be >= 1")
        if self.gpus and len(self.gpus) != self.tp:
            raise ConfigError(f"{prefix}.gpus={list(self.gpus)} must list {prefix}.tp={self.tp} GPUs")


@dataclass
class RolloutConfig:
    """Engine choice and the sampling parameters of training rollouts (evaluation: ``evaluation.*``)."""

    engine: str = "megatron"
    """'megatron' (built-in: samples from the training model itself; CPU and tests) or 'vllm'."""
    temperature: float = 1.0
    """Sampling temperature for training rollouts (the trainer's log-probs use the same)."""
    top_p: float = 1.0
    """Nucleus sampling mass for training rollouts (1.0 = off; keep 1.0 for unbiased RL)."""
    top_k: int = -1
    """Top-k sampling for training rollouts (-1 = off)."""
    max_tokens: int = 128
    """Longest response in tokens; longer ones stop with finish_reason='length'."""
    stop: list = field(default_factory=list)
    """Extra stop strings (EOS always stops)."""
    stop_token_ids: list = field(default_factory=list)
    """Extra token ids that end a response (kept in it, as EOS is), e.g. a chat template's
    end-of-turn token."""
    kv_cache: bool = True
    """Built-in engine: decode with a static KV cache (else recompute the prefix each token)."""
    max_batch: int = 256
    """Built-in engine: most sequences decoded together."""
    vllm: VllmConfig = field(default_factory=VllmConfig)
    """The vLLM engine's settings (used with engine=vllm)."""

    def validate(self, prefix: str = "rollout") -> None:
        if self.engine not in ("megatron", "vllm"):
            raise ConfigError(f"{prefix}.engine={self.engine!r} is not one of megatron, vllm")
        if self.temperature < 0:
            raise ConfigError(f"{prefix}.temperature must be >= 0")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"{prefix}.top_p={self.top_p} must be in (0, 1]")
        bad = [t for t in self.stop_token_ids if not isinstance(t, int) or t < 0]
        if bad:
            raise ConfigError(f"{prefix}.stop_token_ids must be token ids (ints >= 0), got {bad}")
        if self.max_tokens < 1 or self.max_batch < 1:
            raise ConfigError(f"{prefix}.max_tokens and max_batch must be >= 1")
        self.vllm.validate(f"{prefix}.vllm")
