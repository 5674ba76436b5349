"""What stage=rejection_sampling and stage=distill_generate build, and the checks on it.

The ``curation`` group: how many responses are sampled per prompt, which are kept (the
readability filters of :mod:`r1mega.stages.filters`, correctness by rule rewards or a judge),
and where the dataset is written. The stages themselves live in :mod:`r1mega.stages.curation`
and :mod:`r1mega.stages.sampled_dataset`; this module holds only the configuration, so the
schema (:mod:`r1mega.config.schema`) does not import any stage.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from r1mega.config.errors import ConfigError
from r1mega.rewards.text.language import target_fraction
from r1mega.data.judge import JudgeConfig

SPLITS = ("train", "test")
FORMAT_MODES = ("think", "answer_tag", "none")


@dataclass
class FilterConfig:
    """Which sampled responses are good enough to train on (the checks: r1mega.stages.filters)."""

    drop_truncated: bool = True
    """Reject responses cut off by rollout.max_tokens."""
    format_mode: str = "think"
    """Required layout: 'think' (R1: <think>..</think> summary), 'answer_tag' (R1-Zero), 'none'."""
    max_response_tokens: int = 0
    """Reject responses with more tokens than this; 0 = no limit beyond rollout.max_tokens."""
    language: str = "en"
    """Target language of the reasoning (a code the language reward knows: en, zh, fr, ...)."""
    min_language_fraction: float = 0.95
    """Reject when fewer than this share of the reasoning's words are in ``language``; 0 = off."""
    repeat_ngram: int = 4
    """Word n-gram size of the repetition check."""
    max_repeat_fraction: float = 0.5
    """Reject when more than this fraction of word n-grams are repeats; 1 = off."""

    def validate(self, prefix: str = "curation.filters") -> None:
        if self.format_mode not in FORMAT_MODES:
            raise ConfigError(f"{prefix}.format_mode={self.format_mode!r} is not one of {FORMAT_MODES}")
        if self.max_response_tokens < 0:
            raise ConfigError(f"{prefix}.max_response_tokens must be >= 0, got {self.max_response_tokens}")
        if not 0 <= self.min_language_fraction <= 1:
            raise ConfigError(f"{prefix}.min_language_fraction={self.min_language_fraction} must be in [0, 1]")
        if not 0 <= self.max_repeat_fraction <= 1:
            raise ConfigError(f"{prefix}.max_repeat_fraction={self.max_repeat_fraction} must be in [0, 1]")
        if self.repeat_ngram < 1:
            raise ConfigError(f"{prefix}.repeat_ngram must be >= 1, got {self.repeat_ngram}")
        try:
            target_fraction("the reasoning", self.language)
        except KeyError:
            raise ConfigError(f"{prefix}.language={self.language!r} is not a language the language reward knows") from None


@dataclass
class CurationConfig:
    """How a sampled SFT dataset is built (stage=rejection_sampling, stage=distill_generate)."""

    samples_per_prompt: int = 4
    """k: responses sampled per prompt (rollout.temperature/top_p/top_k/max_tokens apply)."""
    keep_per_prompt: int = 0
    """Keep at most this many responses per prompt after filtering; 0 = no cap."""
    require_correct: bool = True
    """Keep only verified-correct responses (rules or judge); False keeps any that pass the filters."""
    split: str = "train"
    """Which split of ``data`` supplies the prompts: train or test."""
    max_prompts: int = 0
    """Use only the first N prompts of the split; 0 = all of them."""
    chunk_prompts: int = 32
    """Prompts per chunk: the unit of work, of streaming to disk and of resumption."""
    judge: Optional[str] = None
    """For answers the rules cannot verify: 'generative' (the causal LM in judge_model compares
    the response with the reference) or 'module:function' with judge(prompt, reference,
    response) -> bool; None = such responses are rejected as unverifiable."""
    judge_model: Optional[str] = None
    """judge=generative: directory of a Hugging Face causal LM and its tokenizer."""
    judge_options: JudgeConfig = field(default_factory=JudgeConfig)
    """judge=generative: reply words, decision margin, answer length (r1mega.data.judge)."""
    judge_sources: list = field(default_factory=list)
    """data_source names always sent to the judge, even when a rule reward exists."""
    output: str = "data.jsonl"
    """File name of the dataset, written in the run directory."""
    filters: FilterConfig = field(default_factory=FilterConfig)
    """Readability filters (see r1mega.stages.filters)."""

    def validate(self, prefix: str = "curation") -> None:
        for key in ("samples_per_prompt", "chunk_prompts"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{prefix}.{key} must be >= 1, got {getattr(self, key)}")
        for key in ("keep_per_prompt", "max_prompts"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{prefix}.{key} must be >= 0, got {getattr(self, key)}")
        if self.split not in SPLITS:
            raise ConfigError(f"{prefix}.split={self.split!r} is not one of {SPLITS}")
        if not self.output or "/" in self.output:
            raise ConfigError(f"{prefix}.output={self.output!r} must be a plain file name")
        if self.judge == "generative":
            if not self.judge_model or not (Path(self.judge_model).expanduser() / "config.json").is_file():
                raise ConfigError(f"{prefix}.judge=generative needs {prefix}.judge_model=DIR of a Hugging Face "
                                 f"causal LM, got {self.judge_model!r}")
        elif self.judge is not None:
            load_judge(self.judge, f"{prefix}.judge")
        self.filters.validate(f"{prefix}.filters")


def load_judge(spec: str, key: str = "curation.judge") -> Callable[[str, Optional[str], str], bool]:
    """Import ``module:function``; ValueError naming ``key`` when it cannot be found."""
    module, sep, name = spec.partition(":")
    if not sep or not module or not name:
        raise ConfigError(f"{key}={spec!r} must look like 'package.module:function'")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"{key}={spec!r} cannot be imported: {e}") from None
    if not callable(fn):
        raise ConfigError(f"{key}={spec!r} is not callable")
    return fn
