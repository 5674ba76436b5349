"""Optional shaping penalties: overlong responses and repetition. Both are <= 0.

``overlong`` -- DAPO's soft overlong punishment (Yu et al., 2025, eq. 13). With maximum length
``L_max`` and a buffer ``L_cache`` before it::

    0                                  if |y| <= L_max - L_cache
    ((L_max - L_cache) - |y|) / L_cache  if L_max - L_cache < |y| <= L_max
    -1                                 if |y| > L_max

``|y|`` is the item's ``num_tokens`` (``unit="tokens"``, the default; items without it are
reported as an error) or the completion's length in characters (``unit="chars"``).

``repetition`` -- the fraction of repeated word n-grams, scaled: with ``total`` n-grams of which
``unique`` are distinct, the value is ``max_penalty * (1 - unique / total)``; 0 for texts with
fewer than ``n`` words. A model looping on the same sentence approaches ``max_penalty``.
"""

from __future__ import annotations

from dataclasses import dataclass

from r1mega.rewards.core.component import Component, one_of, positive
from r1mega.rewards.core.types import RewardItem, Score


@dataclass
class OverlongOptions:
    """Options of the ``overlong`` component (DAPO soft overlong punishment)."""

    max_length: int = 16384
    """L_max: beyond this length the penalty is -1."""
    buffer: int = 4096
    """L_cache: width of the linear ramp from 0 down to -1 that ends at ``max_length``."""
    unit: str = "tokens"
    """``tokens`` (needs the item's ``num_tokens``) or ``chars``."""

    def __post_init__(self) -> None:
        positive(self.max_length, "max_length")
        positive(self.buffer, "buffer")
        if self.buffer > self.max_length:
            raise ValueError(f"buffer must be <= max_length; got {self.buffer} > {self.max_length}")
        one_of(self.unit, ("tokens", "chars"), "unit")


def overlong_penalty(length: int, max_length: int, buffer: int) -> float:
    """The DAPO soft overlong penalty for a response of ``length`` units."""
    start = max_length - buffer
    if length <= start:
        return 0.0
    if length <= max_length:
        return (start - length) / buffer
    return -1.0


class OverlongPenalty(Component):
    """See the module docstring."""

    name = "overlong"
    Options = OverlongOptions

    def plan(self, item: RewardItem) -> Score:
        opts = self.options
        if opts.unit == "tokens":
            if item.num_tokens is None:
                return Score(0.0, "error", error="missing field 'num_tokens' (overlong unit=tokens)")
            length = item.num_tokens
        else:
            length = len(item.completion)
        return Score(overlong_penalty(length, opts.max_length, opts.buffer), "ok", details={"length": length})


@dataclass
class RepetitionOptions:
    """Options of the ``repetition`` component."""

    ngram: int = 3
    """Size of the word n-grams compared."""
    max_penalty: float = -1.0
    """Value for a text made only of repeats (must be <= 0)."""

    def __post_init__(self) -> None:
        positive(self.ngram, "ngram")
        if self.max_penalty > 0:
            raise ValueError(f"max_penalty must be <= 0; got {self.max_penalty}")


def repeated_ngram_fraction(text: str, n: int) -> float:
    """``1 - distinct/total`` over the word n-grams of ``text`` (0 when there are none)."""
    words = text.split()
    total = len(words) - n + 1
    if total <= 0:
        return 0.0
    distinct = len(set(zip(*(words[i:] for i in range(n)))))
    return 1.0 - distinct / total


class RepetitionPenalty(Component):
    """See the module docstring."""

    name = "repetition"
    Options = RepetitionOptions

    def plan(self, item: RewardItem) -> Score:
        fraction = repeated_ngram_fraction(item.completion, self.options.ngram)
        value = self.options.max_penalty * fraction + 0.0  # + 0.0 turns -0.0 into 0.0
        return Score(value, "ok", details={"repeated_fraction": fraction})
