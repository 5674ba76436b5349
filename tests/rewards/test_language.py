"""Language consistency: script-based word counts and the Latin-script heuristic."""

from __future__ import annotations

import pytest

from r1mega.rewards import RewardManager
from r1mega.rewards.text.language import latin_language, script_of, strip_non_prose, target_fraction, word_languages


def test_scripts():
    assert [script_of(c) for c in "aЖ中ひカ한αא"] == ["Latin", "Cyrillic", "Han", "Hiragana", "Katakana", "Hangul",
                                                     "Greek", "Hebrew"]


def test_code_latex_and_numbers_are_not_words():
    text = "Compute $x^2 + \\frac{1}{2}$ and $$\\int f$$ then `len(s)`:\n```python\nprint('hello world')\n```\n12345"
    assert word_languages(text) == {"en": 3}  # compute, and, then


def test_unclosed_math_keeps_the_rest():
    assert "words" in strip_non_prose("price $5 and more words")


def test_english_reasoning_is_fully_consistent():
    fraction, words = target_fraction("Let me compute the sum. Then we check that it is right.", "en")
    assert (fraction, words) == (1.0, 12)


def test_mixed_chinese_and_english():
    text = "首先计算总和。 Then we check the answer."  # 6 Han characters, 5 English words
    assert target_fraction(text, "zh") == (pytest.approx(6 / 11), 11)
    assert target_fraction(text, "en") == (pytest.approx(5 / 11), 11)


def test_latin_languages_are_told_apart_by_cues():
    assert latin_language("Donc nous avons que la fonction est continue".split()) == "fr"
    assert latin_language("Das ist nicht gut und wir müssen es prüfen".split()) == "de"
    assert latin_language("Entonces tenemos que la función es continua".split()) == "es"
    assert latin_language("Then we have that the function is continuous".split()) == "en"
    assert latin_language("Fibonacci".split()) == "latin-unknown"


def test_french_sentence_in_english_reasoning_counts_against_english():
    text = "We add both numbers. Donc nous avons la somme et le produit."
    fraction, words = target_fraction(text, "en")
    assert words == 12 and fraction == pytest.approx(4 / 12)


def test_single_letters_are_treated_as_variables():
    assert target_fraction("Let x be n times k", "en") == (1.0, 3)


def test_component_through_the_manager():
    config = {"num_workers": 0, "sources": {"zh": {"components": [{"name": "language", "options": {"target": "zh"}}]}}}
    with RewardManager(config) as rm:
        results = rm.score_batch([
            {"completion": "<think>首先计算总和</think> 答案是 5", "data_source": "zh"},
            {"completion": "<think>First compute the sum</think> 5", "data_source": "zh"},
            {"completion": "<think>$x+1$</think> 5", "data_source": "zh"},
            {"completion": "no reasoning", "data_source": "zh"},
        ])
    assert [r.reward for r in results] == [1.0, 0.0, 0.0, 0.0]
    assert results[2].details["language"] == {"status": "ok", "words": 0}
    assert results[3].details["language"]["status"] == "no_reasoning"
