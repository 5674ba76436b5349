"""Response filters shared by rejection sampling and distillation data generation.

R1's SFT round keeps only responses that are *correct* and *readable*: "we filter out chain-of-
thought with mixed languages, long paragraphs, and code blocks". Here a response is rejected,
with one reason (the first failing check, in this order), when it is

``truncated``       cut off by the token limit (``finish_reason == 'length'``);
``malformed``       not ``<think> reasoning </think> summary`` -- a missing or duplicated think
                    tag, empty reasoning, or no summary (the format reward's own check, so the
                    data teaches exactly the layout RL rewarded; ``format_mode`` picks R1 or
                    R1-Zero layout, or ``none``);
``overlong``        longer than ``max_response_tokens`` (0 = no limit);
``mixed_language``  the share of target-language words in the reasoning (the language
                    reward's count) is below ``min_language_fraction``;
``repetitive``      the fraction of repeated word n-grams is above ``max_repeat_fraction``.

Correctness (``incorrect``), exact duplicates (``duplicate``) and the per-prompt cap
(``over_cap``) are decided by the stage (:mod:`r1mega.stages.curation`); their counts land in
the same manifest. Every check is a pure function of the text, so a filter decision can be
reproduced from a manifest's record alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from r1mega.rewards.core.extract import split_reasoning
from r1mega.rewards.text.format_reward import FormatOptions, check_format
from r1mega.rewards.text.language import target_fraction
from r1mega.rewards.text.penalties import repeated_ngram_fraction

FORMAT_MODES = ("think", "answer_tag", "none")
REASONS = ("truncated", "malformed", "overlong", "mixed_language", "repetitive")


@dataclass
class FilterConfig:
    """Which sampled responses are good enough to train on (see the module docstring)."""

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
            raise ValueError(f"{prefix}.format_mode={self.format_mode!r} is not one of {FORMAT_MODES}")
        if self.max_response_tokens < 0:
            raise ValueError(f"{prefix}.max_response_tokens must be >= 0, got {self.max_response_tokens}")
        if not 0 <= self.min_language_fraction <= 1:
            raise ValueError(f"{prefix}.min_language_fraction={self.min_language_fraction} must be in [0, 1]")
        if not 0 <= self.max_repeat_fraction <= 1:
            raise ValueError(f"{prefix}.max_repeat_fraction={self.max_repeat_fraction} must be in [0, 1]")
        if self.repeat_ngram < 1:
            raise ValueError(f"{prefix}.repeat_ngram must be >= 1, got {self.repeat_ngram}")
        try:
            target_fraction("the reasoning", self.language)
        except KeyError:
            raise ValueError(f"{prefix}.language={self.language!r} is not a language the language reward knows") from None


def is_malformed(text: str, mode: str) -> bool:
    """True when ``text`` does not follow the layout ``mode`` (see FORMAT_MODES)."""
    if mode == "none":
        return False
    ok, _ = check_format(text, FormatOptions(mode=mode))
    return not ok


def language_fraction(text: str, language: str) -> Optional[float]:
    """Share of ``language`` words in the reasoning (whole text if no </think>); None: no words."""
    reasoning, _ = split_reasoning(text, require_close=True)
    fraction, words = target_fraction(text if reasoning is None else reasoning, language)
    return fraction if words else None


def reject_reason(text: str, num_tokens: int, truncated: bool, cfg: FilterConfig) -> Optional[str]:
    """The first filter ``text`` fails (one of REASONS), or None when it passes them all."""
    if cfg.drop_truncated and truncated:
        return "truncated"
    if is_malformed(text, cfg.format_mode):
        return "malformed"
    if cfg.max_response_tokens and num_tokens > cfg.max_response_tokens:
        return "overlong"
    if cfg.min_language_fraction > 0:
        fraction = language_fraction(text, cfg.language)
        if fraction is not None and fraction < cfg.min_language_fraction:
            return "mixed_language"
    if cfg.max_repeat_fraction < 1 and repeated_ngram_fraction(text, cfg.repeat_ngram) > cfg.max_repeat_fraction:
        return "repetitive"
    return None
