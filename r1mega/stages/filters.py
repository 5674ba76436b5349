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

from typing import Optional

from r1mega.data.curation import FilterConfig
from r1mega.rewards.core.extract import split_reasoning
from r1mega.rewards.text.format_reward import FormatOptions, check_format
from r1mega.rewards.text.language import target_fraction
from r1mega.rewards.text.penalties import repeated_ngram_fraction

REASONS = ("truncated", "malformed", "overlong", "mixed_language", "repetitive")


def is_malformed(text: str, mode: str) -> bool:
    """True when ``text`` does not follow the layout ``mode`` (see r1mega.data.curation.FORMAT_MODES)."""
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
