"""Mathematical equivalence through math-verify (sympy); runs inside a worker process.

math-verify (HuggingFace, MIT) is the field's reference checker: it extracts LaTeX or plain
expressions, parses them with latex2sympy2_extended and compares with a ladder of strategies
(string, numeric with rounding, symbolic simplification, sets/intervals/relations/matrices).
Its comparison is **asymmetric on purpose** -- the gold answer decides the format, e.g. gold
``x=2`` accepts ``2`` but gold ``2`` vs ``x=2`` unwraps the prediction -- so the gold always
goes first.

Conventions inherited from math-verify 0.9 (documented in docs/rewards.md): ``50\\%`` equals
``50`` but not ``0.5``; units and ``^\\circ`` are dropped; ``\\text{...}`` answers compare
case-insensitively; decimals are rounded to 6 places before comparing.

Why this module never uses math-verify's own timeouts: they rely on ``signal.alarm``, which
only works in the main thread, has one-second granularity, and cannot interrupt C code that
never checks for signals (one multiplication of two huge integers, say, while sympy expands
``9^{9^{9^{9}}}``-like inputs). Instead the caller gives a *soft* deadline that
:mod:`r1mega.rewards.execution.worker` raises as an exception with ``setitimer`` (interrupts anything
that returns to the interpreter loop) and the pool enforces a *hard* deadline by killing the
worker process.

Nothing here ever converts a parsed expression to a string: printing a huge sympy object can
itself take forever.
"""

from __future__ import annotations

import functools
import logging

import sympy
from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

from r1mega.rewards.math.normalize import normalize_latex_light

# math-verify warns once per process that its timeouts are off; they are off by design here.
logging.getLogger("math_verify").setLevel(logging.ERROR)

_EXTRACTION = (LatexExtractionConfig(), ExprExtractionConfig())
_MAX_POLY_OPS = 200
_MAX_POLY_EXPONENT = 32


def _as_latex_env(expr: str) -> str:
    """Wrap a bare expression so math-verify's LaTeX extractor sees one inline formula.

    ``$...$`` is used rather than ``\\boxed{...}`` because math-verify 0.9 handles ``50\\%``
    inside ``$`` but not inside ``\\boxed``; newlines would end an inline formula.
    """
    return "$" + normalize_latex_light(expr).replace("\n", " ") + "$"


@functools.lru_cache(maxsize=4096)
def parse_gold(gold: str) -> tuple:
    """Parse a gold answer (bare LaTeX); cached because a GRPO group shares its gold."""
    return tuple(parse(_as_latex_env(gold), list(_EXTRACTION), parsing_timeout=None))


@functools.lru_cache(maxsize=4096)
def _parse_prediction_cached(pred: str, is_latex: bool) -> tuple:
    text = _as_latex_env(pred) if is_latex else pred
    return tuple(parse(text, list(_EXTRACTION), parsing_timeout=None))


def parse_prediction(pred: str, is_latex: bool) -> list:
    """Parse a predicted answer: bare LaTeX, or free text to search for the final answer.

    Cached per worker: short answers ("2", "\\frac{1}{2}") recur across prompts, and the
    ANTLR parse (tens of milliseconds for sets and intervals) dominates the cost of a check.
    """
    return list(_parse_prediction_cached(pred, is_latex))


def verify_answer(
    golds: tuple[str, ...],
    pred: str,
    is_latex: bool,
    float_rounding: int = 6,
    numeric_precision: int = 15,
    strict: bool = True,
) -> bool:
    """True when ``pred`` is equivalent to any of the gold answers."""
    predicted = parse_prediction(pred, is_latex)
    if not predicted:
        return False
    for gold in golds:
        parsed_gold = list(parse_gold(gold))
        if not parsed_gold:
            continue
        quick = polynomial_verdict(parsed_gold, predicted) if strict else None
        if quick is None:
            quick = verify(parsed_gold, predicted, float_rounding=float_rounding,
                           numeric_precision=numeric_precision, strict=strict, timeout_seconds=None)
        if quick:
            return True
    return False


def _rational_poly(expr, symbols):
    """``expr`` as a polynomial with rational coefficients in ``symbols``, else None."""
    if not isinstance(expr, sympy.Expr) or isinstance(expr, sympy.Symbol) or not expr.free_symbols:
        return None
    if expr.has(sympy.UnevaluatedExpr) or sympy.count_ops(expr) > _MAX_POLY_OPS:
        return None
    if any(p.exp.is_Integer and abs(p.exp) > _MAX_POLY_EXPONENT for p in expr.atoms(sympy.Pow)):
        return None
    try:
        return sympy.Poly(expr, *symbols, domain="QQ")
    except (sympy.PolynomialError, sympy.GeneratorsError, sympy.CoercionFailed, ValueError, TypeError):
        return None


def polynomial_verdict(parsed_gold: list, parsed_pred: list) -> bool | None:
    """Decide polynomial identities exactly, without ``simplify``; None when not applicable.

    For two expressions that are polynomials with rational coefficients (``(x+2)(x+3)`` vs
    ``x^2+5x+6``), math-verify's verdict in strict mode is ``simplify(gold - pred) == 0``; the
    expanded difference is zero exactly then, and ``Poly`` computes it in a millisecond where
    ``simplify`` takes tens. Bare symbols (text answers), relations, sets, numbers and
    anything with floats, constants or functions are left to math-verify.
    """
    gold_exprs = [x for x in parsed_gold if isinstance(x, sympy.Basic)]
    pred_exprs = [x for x in parsed_pred if isinstance(x, sympy.Basic)]
    if len(gold_exprs) != 1 or len(pred_exprs) != 1:
        return None
    gold, pred = gold_exprs[0], pred_exprs[0]
    if not isinstance(gold, sympy.Expr) or not isinstance(pred, sympy.Expr):
        return None
    symbols = sorted(gold.free_symbols | pred.free_symbols, key=sympy.default_sort_key)
    g, p = _rational_poly(gold, symbols), _rational_poly(pred, symbols)
    if g is None or p is None:
        return None
    return (g - p).is_zero


# One pair per common answer shape. ANTLR builds its prediction (DFA) caches lazily, per
# process: parsing each shape once in the forkserver lets every forked worker start with them.
_WARM_PAIRS = [
    ("\\frac{1}{2}", "0.5"), ("(1,2]", "(1, 2]"), ("[-3, 13)", "(-3, 13)"), ("x^2+1", "1+x^2"),
    ("x^2+5x+6", "(x+2)(x+3)"), ("(3, -7)", "(-7, 4)"), ("(1, -2, 3)", "(1,2,3)"), ("\\{1,2\\}", "\\{2,1\\}"),
    ("1, 2, 3", "3,2,1"), ("x=2", "2"), ("y=2x+3", "y = 3 + 2x"), ("x^2+y^2=25", "y^2+x^2=25"),
    ("2\\sqrt{3}", "\\sqrt{12}"), ("\\sqrt[3]{2}", "2^{1/3}"), ("4\\pi", "\\pi 4"), ("\\frac{\\pi}{3}", "\\pi/3"),
    ("50\\%", "50"), ("12", "12\\text{ cm}"), ("90", "90^\\circ"), ("\\$1.50", "1.5"), ("\\text{Monday}", "Monday"),
    ("\\text{(C)}", "(C)"), ("\\infty", "-\\infty"), ("1+i", "i+1"), ("e^2", "2e"), ("3\\times 10^5", "300,000"),
    ("\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}", "\\begin{bmatrix}1&2\\\\3&4\\end{bmatrix}"),
    ("\\begin{pmatrix} 2 \\\\ -1 \\end{pmatrix}", "\\begin{pmatrix}2\\\\-1\\end{pmatrix}"),
    ("(-\\infty, 3) \\cup (5, \\infty)", "(5,\\infty)\\cup(-\\infty,3)"), ("\\emptyset", "\\varnothing"),
    ("\\frac{x+1}{x-1}", "(x+1)/(x-1)"), ("1011_2", "1011_{2}"), ("2\\frac{1}{2}", "2.5"),
]


def warm_up() -> None:
    """Exercise the parser on every common answer shape (see ``_WARM_PAIRS``)."""
    for gold, pred in _WARM_PAIRS:
        verify_answer((gold,), pred, True)
    parse_gold.cache_clear()
    _parse_prediction_cached.cache_clear()
