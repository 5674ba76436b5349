"""Shaping penalties: DAPO's soft overlong punishment and the repeated n-gram penalty."""

from __future__ import annotations

import pytest

from r1mega.rewards.text.penalties import (
    OverlongOptions,
    OverlongPenalty,
    RepetitionOptions,
    RepetitionPenalty,
    overlong_penalty,
    repeated_ngram_fraction,
)
from r1mega.rewards.core.types import RewardItem


@pytest.mark.parametrize("length, expected", [
    (0, 0.0), (12, 0.0), (16, 0.0), (17, -0.25), (18, -0.5), (20, -1.0), (21, -1.0), (1000, -1.0),
])
def test_overlong_penalty_ramp(length, expected):
    assert overlong_penalty(length, max_length=20, buffer=4) == pytest.approx(expected)


def test_overlong_component_units():
    tokens = OverlongPenalty(OverlongOptions(max_length=20, buffer=4))
    assert tokens.plan(RewardItem("x", "math", num_tokens=18)).value == pytest.approx(-0.5)
    missing = tokens.plan(RewardItem("x", "math"))
    assert missing.value == 0.0 and "num_tokens" in missing.error
    chars = OverlongPenalty(OverlongOptions(max_length=20, buffer=4, unit="chars"))
    assert chars.plan(RewardItem("y" * 19, "math")).value == pytest.approx(-0.75)


def test_repeated_ngram_fraction():
    assert repeated_ngram_fraction("a b c d e f", 3) == 0.0
    assert repeated_ngram_fraction("a b a b a b a b", 2) == pytest.approx(1 - 2 / 7)
    assert repeated_ngram_fraction("too short", 3) == 0.0


def test_repetition_component_scales_by_max_penalty():
    component = RepetitionPenalty(RepetitionOptions(ngram=2, max_penalty=-0.5))
    looping = component.plan(RewardItem("go on " * 50, "math"))
    assert looping.value == pytest.approx(-0.5 * (1 - 2 / 99))
    fresh = component.plan(RewardItem("every word here is new", "math"))
    assert fresh.value == 0.0 and str(fresh.value) == "0.0"
