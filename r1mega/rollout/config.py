"""How responses are sampled during RL and evaluation (``rollout=`` group)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass
class RolloutConfig:
    """Engine choice and sampling parameters."""

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
    kv_cache: bool = True
    """Built-in engine: decode with a static KV cache (else recompute the prefix each token)."""
    max_batch: int = 256
    """Built-in engine: most sequences decoded together."""
    eval_temperature: float = 0.6
    """Evaluation sampling temperature (the paper: 0.6)."""
    eval_top_p: float = 0.95
    """Evaluation top-p (the paper: 0.95)."""
    eval_k: int = 8
    """Samples per held-out question for pass@1 / cons@k."""
    eval_max_tokens: Optional[int] = None
    """Longest evaluation response; None means max_tokens."""
    vllm_tp: int = 1
    """vLLM tensor-parallel size (independent of the trainer's layout)."""
    vllm_gpu_memory_utilization: float = 0.5
    """Share of GPU memory vLLM may take (colocated with training)."""
    vllm_colocate: bool = True
    """Colocate vLLM with training on the same GPUs (sleep during training)."""
    vllm_enforce_eager: bool = False
    """Skip CUDA-graph capture in vLLM (faster start, slower decode)."""
    vllm_gpus: list = field(default_factory=list)
    """Separate mode (``vllm_colocate=false``): physical GPU ids on this node for vLLM's
    ``vllm_tp`` workers; empty means the ``vllm_tp`` GPUs right after the trainer's local ones."""
    vllm_sleep_level: int = 2
    """Colocated mode: vLLM sleeps after every ``generate`` at this level (1: weights to host
    memory, 2: weights dropped and re-synced from the trainer before the next generation)."""
    vllm_bucket_mb: int = 512
    """Weight-sync bucket size in MiB (the most extra GPU memory one bucket costs per rank)."""
    vllm_fp8: bool = False
    """Serve FP8 (DeepSeek 128x128 block e4m3): weights are block-quantized during the sync."""
    vllm_max_model_len: Optional[int] = None
    """vLLM's context length; None means the longest prompt-plus-response the data allows
    (``data.seq_length`` plus ``max_tokens``, capped by ``model.max_position_embeddings``)."""
    vllm_max_num_seqs: int = 256
    """Most sequences vLLM decodes at once."""
    vllm_attention_backend: Optional[str] = None
    """Force a vLLM attention backend (e.g. TRITON_MLA, FLASH_ATTN); None lets vLLM choose."""
    vllm_model_dir: Optional[str] = None
    """Where the HF-format model directory (config.json + tokenizer) for vLLM is written;
    None means ``<run dir>/vllm_model``."""
    record_dir: Optional[str] = None
    """GRPO: write every step's rollout batch (prompts, responses, rollout log-probs, raw rewards)
    to DIR/step_NNNNNN.json (see r1mega.rl.replay)."""
    replay_dir: Optional[str] = None
    """GRPO: read each step's rollout batch from DIR (written by record_dir) instead of generating
    and scoring; runs at different layouts then train on identical data."""

    def validate(self, prefix: str = "rollout") -> None:
        if self.engine not in ("megatron", "vllm"):
            raise ValueError(f"{prefix}.engine={self.engine!r} is not one of megatron, vllm")
        for key in ("temperature", "eval_temperature"):
            if getattr(self, key) < 0:
                raise ValueError(f"{prefix}.{key} must be >= 0")
        for key in ("top_p", "eval_top_p"):
            if not 0 < getattr(self, key) <= 1:
                raise ValueError(f"{prefix}.{key}={getattr(self, key)} must be in (0, 1]")
        if self.max_tokens < 1 or self.max_batch < 1 or self.eval_k < 1:
            raise ValueError(f"{prefix}.max_tokens, max_batch and eval_k must be >= 1")
        if self.vllm_tp < 1:
            raise ValueError(f"{prefix}.vllm_tp={self.vllm_tp} must be >= 1")
        if self.vllm_sleep_level not in (1, 2):
            raise ValueError(f"{prefix}.vllm_sleep_level={self.vllm_sleep_level} must be 1 or 2")
        if not 0 < self.vllm_gpu_memory_utilization < 1:
            raise ValueError(f"{prefix}.vllm_gpu_memory_utilization={self.vllm_gpu_memory_utilization} "
                             "must be in (0, 1)")
        if self.vllm_bucket_mb < 1:
            raise ValueError(f"{prefix}.vllm_bucket_mb={self.vllm_bucket_mb} must be >= 1")
        if self.vllm_gpus and len(self.vllm_gpus) != self.vllm_tp:
            raise ValueError(f"{prefix}.vllm_gpus={list(self.vllm_gpus)} must list vllm_tp={self.vllm_tp} GPUs")
        if self.record_dir and self.replay_dir:
            raise ValueError(f"{prefix}.record_dir and {prefix}.replay_dir are exclusive (got both)")
