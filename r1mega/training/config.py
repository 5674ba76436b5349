"""Optimizer, schedule and loop settings (``optim=`` and ``trainer=`` groups)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from r1mega.config.errors import ConfigError
from r1mega.models.precision import PrecisionConfig


@dataclass
class OptimConfig:
    """Megatron-Core optimizer and learning-rate schedule."""

    optimizer: str = "adam"
    """'adam' (AdamW, decoupled weight decay) or 'sgd'."""
    lr: float = 1e-3
    """Peak learning rate."""
    min_lr: float = 0.0
    """Learning rate at the end of decay."""
    weight_decay: float = 0.01
    """Decoupled weight decay (not applied to norms and biases)."""
    adam_beta1: float = 0.9
    """Adam beta1."""
    adam_beta2: float = 0.95
    """Adam beta2."""
    adam_eps: float = 1e-8
    """Adam epsilon."""
    clip_grad: float = 1.0
    """Clip the global gradient norm to this value; 0 disables clipping."""
    warmup_steps: int = 10
    """Linear warm-up steps."""
    decay_style: str = "cosine"
    """'cosine', 'linear' or 'constant' after warm-up."""
    decay_steps: Optional[int] = None
    """Steps over which to decay; None means trainer.max_steps."""

    def validate(self, prefix: str = "optim") -> None:
        if self.optimizer not in ("adam", "sgd"):
            raise ConfigError(f"{prefix}.optimizer={self.optimizer!r} is not one of adam, sgd")
        if self.lr <= 0:
            raise ConfigError(f"{prefix}.lr must be > 0, got {self.lr}")
        if not 0 <= self.min_lr <= self.lr:
            raise ConfigError(f"{prefix}.min_lr={self.min_lr} must be in [0, optim.lr={self.lr}]")
        if self.decay_style not in ("cosine", "linear", "constant"):
            raise ConfigError(f"{prefix}.decay_style={self.decay_style!r} is not one of cosine, linear, constant")
        if self.warmup_steps < 0 or self.clip_grad < 0:
            raise ConfigError(f"{prefix}.warmup_steps and {prefix}.clip_grad must be >= 0")


@dataclass
class TrainerConfig:
    """The training loop: length, batch sizes, checkpoints, logging, precision."""

    max_steps: int = 200
    """Optimizer steps to run (in total, counting steps done before a resume)."""
    global_batch_size: int = 32
    """Samples (SFT) or prompts x group size (RL) per optimizer step, over all DP ranks."""
    micro_batch_size: int = 8
    """Samples per forward/backward pass on one rank (gradient accumulation fills the rest)."""
    max_tokens_per_microbatch: Optional[int] = None
    """RL stages: run the log-prob and training passes on packed sequences (THD) of at most
    this many tokens per micro-batch, with the rollout rows dealt to the data-parallel ranks so
    their token counts balance; None keeps ``micro_batch_size`` rows per micro-batch, each
    padded to the step's longest row."""
    seed: int = 1234
    """Seed for weights, data order and sampling."""
    log_interval: int = 1
    """Write a metrics.jsonl line every N steps."""
    save_interval: int = 100
    """Save a checkpoint every N steps (and always at the end); 0 saves only at the end."""
    keep_checkpoints: int = 2
    """Keep this many most recent checkpoints (older ones are deleted after a save)."""
    checkpoint_dir: Optional[str] = None
    """Where checkpoints go; None means <run dir>/checkpoints."""
    resume: bool = True
    """Continue from the latest complete checkpoint in checkpoint_dir when there is one."""
    init_from: Optional[str] = None
    """Initial weights: a checkpoint directory from another run or stage (model only)."""
    eval_interval: int = 0
    """Evaluate on the held-out split every N steps; 0 only at start and end of RL stages."""
    progress: bool = True
    """Show a progress bar with ETA on rank 0."""
    plots: bool = True
    """Write PNG plots of the main curves into the run directory at the end."""
    loggers: List[str] = field(default_factory=list)
    """Sinks besides metrics.jsonl, with its keys and values: 'tensorboard' (<run dir>/tensorboard/),
    'wandb' (W&B run in <run dir>/wandb/; WANDB_MODE=offline needs no network)."""
    precision: PrecisionConfig = field(default_factory=PrecisionConfig)
    """dtype and FP8 settings."""

    def validate(self, prefix: str = "trainer") -> None:
        if self.max_steps < 1:
            raise ConfigError(f"{prefix}.max_steps must be >= 1, got {self.max_steps}")
        for key in ("log_interval",):
            if getattr(self, key) < 1:
                raise ConfigError(f"{prefix}.{key} must be >= 1")
        for key in ("save_interval", "eval_interval"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{prefix}.{key} must be >= 0")
        if self.keep_checkpoints < 1:
            raise ConfigError(f"{prefix}.keep_checkpoints must be >= 1")
        if self.max_tokens_per_microbatch is not None and self.max_tokens_per_microbatch < 1:
            raise ConfigError(f"{prefix}.max_tokens_per_microbatch must be >= 1 (or null), got "
                             f"{self.max_tokens_per_microbatch}")
        self.precision.validate(f"{prefix}.precision")
        from r1mega.training.sinks import check_loggers

        check_loggers(self.loggers, f"{prefix}.loggers")
