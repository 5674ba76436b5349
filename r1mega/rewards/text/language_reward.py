"""Language-consistency reward (DeepSeek-R1, stage 2 onwards).

The value is the proportion of target-language words in the chain of thought, in [0, 1], as
counted by :mod:`r1mega.rewards.text.language`. The paper adds it directly to the accuracy reward;
give it a weight in the source's component list to do the same.

The character-level scan is pure Python and proportional to the completion length (tens of
milliseconds for a 32k-token CoT), so it runs as a pool job, spread over the workers.
"""

from __future__ import annotations

from dataclasses import dataclass

from r1mega.rewards.core.component import Component, one_of, positive
from r1mega.rewards.core.extract import split_reasoning
from r1mega.rewards.core.types import Job, Outcome, RewardItem, Score
from r1mega.rewards.text.language import LATIN_LANGUAGES, SCRIPT_LANGUAGES, target_fraction

_SCOPES = ("reasoning", "completion")


@dataclass
class LanguageOptions:
    """Options of the ``language`` component."""

    target: str = "en"
    """Target language code: en, fr, de, es, it, pt, nl, zh, ja, ko, ru, uk, bg, el, he, ar, fa, hi, bn, ta, th, ka, hy."""
    scope: str = "reasoning"
    """``reasoning``: the text inside <think></think> (0 when there is none); ``completion``: all of it."""
    empty_value: float = 0.0
    """Value when the scoped text has no words at all (only maths, code or numbers)."""
    timeout_s: float = 10.0
    """Hard limit for the scan of one completion."""

    def __post_init__(self) -> None:
        languages = tuple(sorted(LATIN_LANGUAGES | set(SCRIPT_LANGUAGES)))
        one_of(self.target, languages, "target")
        one_of(self.scope, _SCOPES, "scope")
        positive(self.timeout_s, "timeout_s")


def language_fraction(text: str, target: str, empty_value: float) -> tuple[float, int]:
    """Worker entry point: ``(fraction of target words, word count)``."""
    fraction, words = target_fraction(text, target)
    return (fraction if words else empty_value), words


def _finish(outcome: Outcome) -> Score:
    if outcome.status != "ok":
        return Score(0.0, outcome.status, error=f"language scan failed: {outcome.error or outcome.status}")
    value, words = outcome.value
    return Score(float(value), "ok", details={"words": words})


class LanguageConsistency(Component):
    """See the module docstring."""

    name = "language"
    Options = LanguageOptions

    def plan(self, item: RewardItem) -> Score | Job:
        opts = self.options
        if opts.scope == "reasoning":
            text, _ = split_reasoning(item.completion, require_close=True)
            if text is None:
                return Score(0.0, "no_reasoning")
        else:
            text = item.completion
        return Job(
            fn=language_fraction,
            args=(text, opts.target, opts.empty_value),
            timeout_s=opts.timeout_s,
            finish=_finish,
        )
