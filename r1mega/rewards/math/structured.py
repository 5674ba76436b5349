"""Fast path for answers made of plain numbers: points, intervals, sets, matrices, k*sqrt(m).

math-verify parses these with latex2sympy's ANTLR grammar, whose full-context predictions for
brackets and commas cost 50-400 ms per answer; comparing the numbers directly costs
microseconds. Like :mod:`r1mega.rewards.math.normalize`, this module only answers when the
verdict is certain under math-verify's semantics, and returns None otherwise:

* ``(a, b, ...)`` / ``[a, b)`` / ``(a, b]`` / ``[a, b]`` -- ordered; with the same brackets and
  the same number of elements, math-verify compares intervals endpoint by endpoint and tuples
  element by element (a 2-tuple against an open interval as a tuple), so: every element equal
  -> True, one element certainly different -> False. With a square bracket, only proper
  intervals (start < end) are compared: sympy turns ``[5, 3)`` into the empty set and ``[3, 3]``
  into ``{3}``. Two proper intervals with different brackets are different sets -> False.
* ``\\{a, b, ...\\}`` -- sets of exact numbers (no decimals): equal as sets -> True, else False.
* ``\\begin{pmatrix}...\\end{pmatrix}`` (or ``bmatrix``) -- same shape, element by element.
* ``k\\sqrt{m}`` with integers -- equal exactly when ``sign(k) k^2 m`` agree.

Element strings with leading zeros (``000``) are refused: ``(1,000)`` might be a thousand.
"""

from __future__ import annotations

import re
from fractions import Fraction

_MAX_ELEMENTS = 64
_ORDERED = re.compile(r"([(\[])(.*)([)\]])", re.DOTALL)
_SET = re.compile(r"\\\{(.*)\\\}", re.DOTALL)
_MATRIX = re.compile(r"\\begin\{([pb]matrix)\}(.*)\\end\{\1\}", re.DOTALL)
_RADICAL = re.compile(r"([+-]?\d{0,6})\\sqrt(?:\{(\d{1,6})\}|(\d))")  # \sqrt23 is sqrt(2)*3
_LEADING_ZERO = re.compile(r"[+-]?0\d")


def _numbers(parts: list[str], number_parser) -> list[tuple[Fraction, bool]] | None:
    if not 0 < len(parts) <= _MAX_ELEMENTS:
        return None
    values = []
    for part in parts:
        if _LEADING_ZERO.match(part):
            return None
        value = number_parser(part)
        if value is None:
            return None
        values.append(value)
    return values


def parse_structure(text: str, number_parser) -> tuple[str, tuple, list] | None:
    """``(kind, shape, [(value, is_decimal), ...])`` for a structure of plain numbers, else None.

    ``text`` must already be compacted (no whitespace, no ``\\left``/``\\right``).
    """
    m = _MATRIX.fullmatch(text)
    if m:
        rows = [r for r in m.group(2).split("\\\\") if r]
        cells = [r.split("&") for r in rows]
        if not cells or len({len(r) for r in cells}) != 1:
            return None
        values = _numbers([c for r in cells for c in r], number_parser)
        return ("matrix", (len(cells), len(cells[0])), values) if values else None
    m = _SET.fullmatch(text)
    if m:
        values = _numbers(m.group(1).split(","), number_parser)
        return ("set", (), values) if values else None
    m = _ORDERED.fullmatch(text)
    if m and not re.search(r"[()\[\]{}]", m.group(2).replace("\\frac", "").replace("{", "").replace("}", "")):
        values = _numbers(m.group(2).split(","), number_parser)
        if values and len(values) >= 2:
            return ("ordered", (m.group(1), m.group(3), len(values)), values)
    return None


def _radical(text: str) -> tuple[int, int] | None:
    """``k\\sqrt{m}`` -> ``(sign(k) * k^2 * m, 0)`` key; None for anything else."""
    m = _RADICAL.fullmatch(text)
    if not m:
        return None
    k_text = m.group(1)
    k = -1 if k_text == "-" else 1 if k_text in ("", "+") else int(k_text)
    radicand = int(m.group(2) or m.group(3))
    return (1 if k > 0 else -1 if k < 0 else 0) * k * k * radicand, 0


def _proper(values: list) -> bool:
    """A two-element list that reads as a non-empty interval (start < end)."""
    return len(values) == 2 and values[0][0] < values[1][0]


def _different_intervals(g: tuple, p: tuple) -> bool | None:
    """Two proper intervals with different brackets are different sets."""
    if g[0] != "ordered" or g[1][2] != p[1][2]:
        return None
    return False if _proper(g[2]) and _proper(p[2]) else None


def structured_verdict(gold: str, pred: str, element_verdict, number_parser) -> bool | None:
    """Certain verdict for two compacted structured answers, or None (see module docstring)."""
    g_rad, p_rad = _radical(gold), _radical(pred)
    if g_rad is not None and p_rad is not None:
        return g_rad == p_rad
    g, p = parse_structure(gold, number_parser), parse_structure(pred, number_parser)
    if g is None or p is None or g[0] != p[0]:
        return None
    if g[1] != p[1]:
        return _different_intervals(g, p)
    kind, _, g_values = g
    p_values = p[2]
    if kind == "set":
        if any(dec for _, dec in g_values + p_values):
            return None
        return {v for v, _ in g_values} == {v for v, _ in p_values}
    if kind == "ordered" and g[1][:2] != ("(", ")") and not (_proper(g_values) and _proper(p_values)):
        return None  # an improper [a, b) is EmptySet or {a} to sympy, not a pair
    verdicts = [element_verdict(a, b) for a, b in zip(g_values, p_values)]
    if all(v is True for v in verdicts):
        return True
    if any(v is False for v in verdicts):
        return False
    return None
