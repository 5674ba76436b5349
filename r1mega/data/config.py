"""Where training text comes from and how it is turned into tokens (``data=`` group)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from r1mega.config.errors import ConfigError
from r1mega.data.synthetic import SyntheticTaskConfig
from r1mega.data.templates import TEMPLATES


@dataclass
class DataConfig:
    """A dataset: the bundled synthetic task or user JSONL/Parquet files."""

    source: str = "synthetic"
    """'synthetic' (bundled task) or 'files' (train_files / test_files below)."""
    train_files: list = field(default_factory=list)
    """JSONL (.jsonl) or Parquet (.parquet) files for training, when source=files."""
    test_files: list = field(default_factory=list)
    """Held-out files for evaluation, when source=files."""
    prompt_key: str = "prompt"
    """Field holding the question / user prompt."""
    response_key: str = "response"
    """Field holding the target response (SFT)."""
    messages_key: Optional[str] = None
    """Field holding an OpenAI-style message list instead of prompt/response (SFT)."""
    answer_key: str = "answer"
    """Field holding the gold answer (RL rewards, evaluation)."""
    data_source_key: str = "data_source"
    """Field naming the reward route (math, code, synthetic, ...); missing means default_source."""
    default_source: str = "synthetic"
    """data_source used when a record has none."""
    tokenizer: str = "bundled"
    """'bundled' or a local directory with Hugging Face tokenizer files."""
    template: str = "chat"
    """Prompt template: chat (tokenizer chat template), r1_zero (the paper's), plain."""
    seq_length: int = 256
    """Longest training sequence in tokens (prompt + response); longer samples are truncated."""
    pack: bool = False
    """Pack several samples into one sequence of seq_length (SFT); attention stays per sample."""
    group_by_length: bool = False
    """SFT: draw each global batch from samples of similar length, so that a batch pads to its
    own longest sample (Hugging Face Trainer's group_by_length; r1mega/data/sampler.py). The
    loss is a mean over a batch's tokens, so a batch of short samples then weighs as much as
    one of long samples: on the tiny cold start (half one-line answers) 400 grouped steps
    learned the worked steps no better than 200 mixed ones (accuracy 0.23 vs 1.00 at 400)."""
    on_error: str = "raise"
    """Malformed records: 'raise' (error naming file and line) or 'skip' (count and go on)."""
    shuffle: bool = True
    """Shuffle the train split each epoch (deterministically from trainer.seed)."""
    synthetic: SyntheticTaskConfig = field(default_factory=SyntheticTaskConfig)
    """The bundled task's parameters, when source=synthetic."""

    def validate(self, prefix: str = "data") -> None:
        if self.source not in ("synthetic", "files"):
            raise ConfigError(f"{prefix}.source={self.source!r} is not one of synthetic, files")
        if self.source == "files" and not self.train_files:
            raise ConfigError(f"{prefix}.train_files is empty but {prefix}.source=files")
        if self.template not in TEMPLATES:
            raise ConfigError(f"{prefix}.template={self.template!r} is not one of {TEMPLATES}")
        if self.on_error not in ("raise", "skip"):
            raise ConfigError(f"{prefix}.on_error={self.on_error!r} is not one of raise, skip")
        if self.pack and self.group_by_length:
            raise ConfigError(f"{prefix}.pack and {prefix}.group_by_length exclude each other: "
                             "packed rows all have seq_length tokens")
        if self.seq_length < 16:
            raise ConfigError(f"{prefix}.seq_length={self.seq_length} is too small (>= 16)")
        if self.source == "synthetic":
            self.synthetic.validate(f"{prefix}.synthetic")
