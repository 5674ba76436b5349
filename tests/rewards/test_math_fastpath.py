"""The fast path in front of sympy: correct on its own, and never contradicting math-verify."""

from __future__ import annotations

import itertools
import random
from fractions import Fraction

import pytest

from r1mega.rewards.math.normalize import compact, fast_verdict, normalize_latex_light, parse_plain_number
from r1mega.rewards.math.verify_backend import verify_answer


@pytest.mark.parametrize("text, value, decimal", [
    ("12", Fraction(12), False),
    ("-3", Fraction(-3), False),
    ("+7", Fraction(7), False),
    ("0.75", Fraction(3, 4), True),
    (".5", Fraction(1, 2), True),
    ("3/4", Fraction(3, 4), False),
    ("\\frac{3}{4}", Fraction(3, 4), False),
    ("\\dfrac{3}{4}", Fraction(3, 4), False),
    ("-\\frac{1}{3}", Fraction(-1, 3), False),
    ("\\frac{-1}{3}", Fraction(-1, 3), False),
    (" 42. ", Fraction(42), False),
])
def test_parse_plain_number(text, value, decimal):
    assert parse_plain_number(text) == (value, decimal)


@pytest.mark.parametrize("text", ["1e5", "2^{10}", "1,000", "\\sqrt{2}", "x", "1/0", "1" * 16, "50\\%", ""])
def test_parse_plain_number_declines(text):
    assert parse_plain_number(text) is None


@pytest.mark.parametrize("gold, pred, verdict", [
    ("405", "405", True),
    ("405", "404", False),
    ("\\frac{1}{2}", "0.5", True),
    ("0.5", "1/2", True),
    ("\\frac{3}{4}", "\\frac{6}{8}", True),
    ("\\frac{1}{3}", "\\frac{1}{4}", False),
    ("2", "2.5", False),
    ("\\frac{1}{3}", "0.333333", None),   # math-verify's rounding decides
    ("\\sqrt{2}", "\\sqrt{2}", True),     # identical strings
    ("\\left( 1, 2 \\right)", "(1,2)", True),
    ("x+1", "1+x", None),
    ("5", "", False),
])
def test_fast_verdict(gold, pred, verdict):
    assert fast_verdict(gold, pred) is verdict


def test_light_normalisation():
    assert normalize_latex_light("$\\dfrac{1}{2}$.") == "\\frac{1}{2}"
    assert normalize_latex_light("1\\,000") == "1000"
    assert normalize_latex_light("\\varnothing") == "\\emptyset"
    assert compact(" \\left[ 1 , 2 \\right) ") == "[1,2)"


def _number_forms(value: Fraction, rng: random.Random) -> list[str]:
    forms = [f"\\frac{{{value.numerator}}}{{{value.denominator}}}", f"{value.numerator}/{value.denominator}"]
    if value.denominator == 1:
        forms.append(str(value.numerator))
    decimal = value.numerator / value.denominator
    forms.append(f"{decimal:.6f}".rstrip("0").rstrip("."))
    forms.append(f"{decimal + rng.choice([1e-7, 3e-6, 0.01]):.7f}")
    return forms


def test_fast_path_agrees_with_math_verify():
    """On every pair the fast path decides, math-verify must reach the same verdict."""
    rng = random.Random(0)
    values = {Fraction(rng.randint(-50, 50), rng.choice([1, 1, 2, 3, 4, 5, 8, 10, 16])) for _ in range(40)}
    strings = sorted({form for v in values for form in _number_forms(v, rng)})
    pairs = rng.sample(list(itertools.product(strings, strings)), 600)
    pairs += [(s, s) for s in strings[:20]]
    decided = 0
    for gold, pred in pairs:
        fast = fast_verdict(gold, pred)
        if fast is None:
            continue
        decided += 1
        assert fast == verify_answer((gold,), pred, True), (gold, pred, fast)
    assert decided > 300  # the fast path really covers most plain-number pairs


def _structures(rng: random.Random) -> list[str]:
    def num():
        return rng.choice([str(rng.randint(-5, 5)), f"\\frac{{{rng.randint(1, 5)}}}{{{rng.randint(2, 3)}}}",
                           f"{rng.randint(-5, 5)}.5"])

    out = []
    for _ in range(60):
        a, b, c = num(), num(), num()
        left, right = rng.choice("(["), rng.choice(")]")
        out += [f"{left}{a}, {b}{right}", f"({a}, {b}, {c})", f"\\{{{a}, {b}\\}}",
                f"\\begin{{pmatrix}} {a} & {b} \\\\ {c} & {a} \\end{{pmatrix}}", f"{rng.randint(1, 4)}\\sqrt{{{b[-1]}}}"]
    return out


def test_structured_fast_path_agrees_with_math_verify():
    """Points, intervals, sets, matrices and radicals: decided pairs must match math-verify."""
    rng = random.Random(1)
    strings = _structures(rng)
    by_shape: dict[str, list[str]] = {}
    for s in strings:
        by_shape.setdefault(s[:2], []).append(s)
    pairs = []
    for group in by_shape.values():
        pairs += [(rng.choice(group), rng.choice(group)) for _ in range(25)]
    decided = 0
    for gold, pred in pairs:
        fast = fast_verdict(gold, pred)
        if fast is None:
            continue
        decided += 1
        assert fast == verify_answer((gold,), pred, True), (gold, pred, fast)
    assert decided > 100


def test_polynomial_shortcut_agrees_with_math_verify():
    """Polynomial identities decided by Poly must match math-verify's simplify-based verdict."""
    from math_verify import verify

    from r1mega.rewards.math.verify_backend import parse_gold, parse_prediction, polynomial_verdict

    rng = random.Random(2)
    pairs = []
    for _ in range(15):
        a, b = rng.randint(-6, 6), rng.randint(-6, 6)
        gold = f"x^2+{a + b}x+{a * b}".replace("+-", "-")
        pairs.append((gold, f"(x+{a})(x+{b})".replace("+-", "-")))
        pairs.append((gold, f"(x+{a})(x+{b + 1})".replace("+-", "-")))
    pairs += [("a^2-b^2", "(a-b)(a+b)"), ("a^2-b^2", "(a-b)^2"), ("2x+3", "3+2x"), ("xy", "yx"), ("x", "y"),
              ("\\text{Monday}", "Monday"), ("Monday", "Tuesday"), ("x^2", "x^{2.0}"), ("\\pi x", "x \\pi")]
    decided = 0
    for gold, pred in pairs:
        parsed_gold, parsed_pred = list(parse_gold(gold)), parse_prediction(pred, True)
        quick = polynomial_verdict(parsed_gold, parsed_pred)
        if quick is None:
            continue
        decided += 1
        assert quick == verify(parsed_gold, parsed_pred, timeout_seconds=None), (gold, pred, quick)
    assert decided >= 30
