"""Cheap answer normalisation and the fast path in front of sympy.

Most answers in RL maths data are small numbers (``405``, ``-3``, ``0.75``, ``\\frac{3}{4}``),
and in GRPO many completions of a group repeat the same string. Sending those to a worker to
be parsed by math-verify costs milliseconds each; deciding them here costs microseconds. The
fast path must never contradict the slow one, so it only answers when the answer is certain
under math-verify's own conventions:

* **identical strings** (after removing spacing and presentation-only LaTeX such as
  ``\\left``, ``\\dfrac``, ``\\!``) -> equal;
* **plain numbers** (integers, decimals, ``a/b``, ``\\frac{a}{b}`` of at most 15 significant
  digits) compared as exact rationals: equal values -> equal; two different rationals without a
  decimal point -> different; a decimal that differs from the other number by more than what
  math-verify's rounding to ``float_rounding`` places could absorb -> different;
* **structures of plain numbers** (points, intervals, sets, matrices) and ``k\\sqrt{m}``:
  see :mod:`r1mega.rewards.math.structured`.

Anything else (including "close but not equal" decimals, percentages, units, expressions)
returns None and goes to math-verify in a worker. ``tests/rewards/test_math_fastpath.py``
checks the agreement with math-verify on generated pairs.

All regexes here are anchored and linear; inputs are length-capped by the caller.
"""

from __future__ import annotations

import re
from fractions import Fraction

from r1mega.rewards.math.structured import structured_verdict

_MAX_SIGNIFICANT_DIGITS = 15
# Decimal comparisons are only decided here for magnitudes where 15 significant digits still
# cover the rounding position; above that sympy's Float precision matters and we defer.
_MAX_MAGNITUDE = 10**8

_PRESENTATION = [
    (re.compile(r"\\[dt]frac"), r"\\frac"),
    (re.compile(r"\\left(?![a-zA-Z])\.?"), ""),
    (re.compile(r"\\right(?![a-zA-Z])\.?"), ""),
    (re.compile(r"\\[!,;:](?=\d{3}(?!\d))"), ""),  # 1\,000 -> 1000 (thin-space grouping)
    (re.compile(r"\\!"), ""),
    (re.compile(r"\\varnothing(?![a-zA-Z])"), r"\\emptyset"),
    (re.compile(r"\\displaystyle(?![a-zA-Z])"), ""),
]
_TRAILING_PUNCT = re.compile(r"[\s.]+$")
_SPACES = re.compile(r"\s+")
_SURROUNDING_MATH = re.compile(r"^(?:\$\$?|\\\(|\\\[)(.*?)(?:\$\$?|\\\)|\\\])$", re.DOTALL)

_INT = r"\d{1,40}"
_NUMBER_FORMS = [
    ("int", re.compile(rf"([+-]?)({_INT})")),
    ("dec", re.compile(rf"([+-]?)({_INT})?\.(\d{{1,40}})")),
    ("frac", re.compile(rf"([+-]?)({_INT})/({_INT})")),
    ("frac", re.compile(rf"([+-]?)\\frac\{{({_INT})\}}\{{({_INT})\}}")),
    ("frac", re.compile(rf"\\frac\{{(-)({_INT})\}}\{{({_INT})\}}")),
]


def normalize_latex_light(text: str) -> str:
    """Remove presentation-only LaTeX that math-verify would also ignore.

    Used both for the fast path and on the strings sent to math-verify, so ``\\varnothing`` and
    ``1\\,000`` (which math-verify 0.9 misreads) arrive in a form it understands.
    """
    text = _TRAILING_PUNCT.sub("", text.strip())
    m = _SURROUNDING_MATH.match(text)
    if m:
        text = m.group(1).strip()
    for pattern, replacement in _PRESENTATION:
        text = pattern.sub(replacement, text)
    return _TRAILING_PUNCT.sub("", text)


def compact(text: str) -> str:
    """Normalised text without any whitespace: the key for the identical-string test."""
    return _SPACES.sub("", normalize_latex_light(text))


def _significant_digits(*parts: str | None) -> int:
    digits = "".join(p for p in parts if p).lstrip("0")
    return len(digits)


def parse_plain_number(text: str) -> tuple[Fraction, bool] | None:
    """Parse a plain number; returns ``(value, has_decimal_point)`` or None.

    Accepts ``12``, ``-3``, ``0.75``, ``.5``, ``3/4``, ``\\frac{3}{4}``, ``-\\frac{3}{4}``,
    ``\\frac{-3}{4}``, at most 15 significant digits in each integer part.
    """
    text = compact(text)
    for kind, pattern in _NUMBER_FORMS:
        m = pattern.fullmatch(text)
        if m is None:
            continue
        sign = -1 if m.group(1) == "-" else 1
        if kind == "int":
            if _significant_digits(m.group(2)) > _MAX_SIGNIFICANT_DIGITS:
                return None
            return Fraction(sign * int(m.group(2))), False
        if kind == "dec":
            whole, frac = m.group(2) or "0", m.group(3)
            if _significant_digits(whole, frac) > _MAX_SIGNIFICANT_DIGITS:
                return None
            return sign * Fraction(int(whole + frac), 10 ** len(frac)), True
        num, den = m.group(2), m.group(3)
        if max(_significant_digits(num), _significant_digits(den)) > _MAX_SIGNIFICANT_DIGITS:
            return None
        if int(den) == 0:
            return None
        return sign * Fraction(int(num), int(den)), False
    return None


def number_verdict(g: tuple[Fraction, bool], p: tuple[Fraction, bool], float_rounding: int = 6) -> bool | None:
    """Compare two parsed plain numbers ``(value, has_decimal_point)`` under math-verify's rules."""
    (gv, g_dec), (pv, p_dec) = g, p
    if gv == pv:
        return True
    if not g_dec and not p_dec:
        return False
    # math-verify rounds decimals to `float_rounding` places before comparing: a difference
    # of two rounding steps or more cannot round away.
    if max(abs(gv), abs(pv)) < _MAX_MAGNITUDE and abs(gv - pv) >= Fraction(2, 10**float_rounding):
        return False
    return None


def fast_verdict(gold: str, pred: str, float_rounding: int = 6) -> bool | None:
    """True/False when certain without sympy (see module docstring), None to defer."""
    if not pred.strip():
        return False
    g_text, p_text = compact(gold), compact(pred)
    if g_text == p_text:
        return True
    g, p = parse_plain_number(g_text), parse_plain_number(p_text)
    if g is not None and p is not None:
        return number_verdict(g, p, float_rounding)
    return structured_verdict(g_text, p_text, lambda a, b: number_verdict(a, b, float_rounding), parse_plain_number)
