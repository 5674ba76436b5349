"""Maths accuracy: 1.0 when the final answer is equivalent to the gold answer, else 0.0.

Pipeline for one item, cheapest first:

1. **extract** the final answer in the calling process (:mod:`r1mega.rewards.core.extract`): last
   ``<answer>`` tag or last ``\\boxed{}`` after ``</think>``; no closing ``</think>`` means no
   answer (``require_think``), so an unfinished generation scores 0.
2. **fast path** (:mod:`r1mega.rewards.math.normalize`, :mod:`r1mega.rewards.math.structured`):
   identical normalised strings, plain numbers, and points/intervals/sets/matrices of plain
   numbers are decided in microseconds with no worker round trip.
3. **math-verify** in a worker (:mod:`r1mega.rewards.math.verify_backend`; polynomial
   identities are settled there with ``Poly`` instead of ``simplify``) under a soft deadline
   (exception inside the worker) and a hard one (the pool kills the worker). A timeout scores
   0 with status ``timeout``; verdicts are cached across batches, timeouts are not.

Several gold answers may be given as a list; any match counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from r1mega.rewards.core.component import Component, one_of, positive
from r1mega.rewards.core.extract import extract_math_answer, normalize_gold
from r1mega.rewards.core.types import Job, Outcome, RewardItem, Score
from r1mega.rewards.math.normalize import fast_verdict

_FORMS = ("boxed", "answer_tag")


@dataclass
class MathAccuracyOptions:
    """Options of the ``math_accuracy`` component."""

    answer_forms: list[str] = field(default_factory=lambda: ["boxed", "answer_tag"])
    """Accepted final-answer forms: ``boxed`` (R1) and/or ``answer_tag`` (R1-Zero template)."""
    require_think: bool = True
    """Without ``</think>`` there is no valid answer. False: the whole completion is searched."""
    free_text_fallback: bool = False
    """With no boxed/tagged answer, let math-verify search the final text ("the answer is 5")."""
    timeout_s: float = 3.0
    """Hard limit per verification; past it the worker is killed and the answer scores 0."""
    soft_timeout_fraction: float = 0.7
    """Fraction of ``timeout_s`` after which the worker interrupts sympy itself (cheaper)."""
    max_answer_chars: int = 2000
    """Longer extracted answers score 0 without being parsed (status ``answer_too_long``)."""
    float_rounding: int = 6
    """math-verify: decimal places kept when comparing floats."""
    numeric_precision: int = 15
    """math-verify: significant digits for numeric evaluation."""
    strict: bool = True
    """math-verify strict mode: variable names matter, sets and tuples differ."""

    def __post_init__(self) -> None:
        for form in self.answer_forms:
            one_of(form, _FORMS, "answer_forms[]")
        if not self.answer_forms:
            raise ValueError("answer_forms must not be empty")
        positive(self.timeout_s, "timeout_s")
        if not 0 < self.soft_timeout_fraction <= 1:
            raise ValueError(f"soft_timeout_fraction must be in (0, 1]; got {self.soft_timeout_fraction}")
        positive(self.max_answer_chars, "max_answer_chars")
        if self.float_rounding < 0:
            raise ValueError(f"float_rounding must be >= 0; got {self.float_rounding}")
        positive(self.numeric_precision, "numeric_precision")


def gold_answers(answer: object) -> tuple[str, ...]:
    """Normalise the item's ``answer`` field to a tuple of gold strings (ValueError if unusable)."""
    values = answer if isinstance(answer, (list, tuple)) else [answer]
    golds = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ValueError(f"field 'answer' must be a string, a number or a list of them; got {value!r}")
        text = normalize_gold(str(value))
        if text:
            golds.append(text)
    if not golds:
        raise ValueError("field 'answer' is empty")
    return tuple(golds)


def run_math_verify(*args):
    """Worker entry point; imports sympy lazily so the calling process never has to."""
    from r1mega.rewards.math.verify_backend import verify_answer

    return verify_answer(*args)


def _finish(extracted: str):
    def finish(outcome: Outcome) -> Score:
        details = {"answer": extracted[:200], "path": "math_verify"}
        if outcome.status == "ok":
            ok = bool(outcome.value)
            return Score(1.0 if ok else 0.0, "correct" if ok else "wrong", details=details)
        if outcome.status == "timeout":
            return Score(0.0, "timeout", details=details)
        return Score(0.0, outcome.status, error=f"math verification failed: {outcome.error}", details=details)

    return finish


class MathAccuracy(Component):
    """See the module docstring."""

    name = "math_accuracy"
    Options = MathAccuracyOptions
    required_fields = ("answer",)

    def plan(self, item: RewardItem) -> Score | Job:
        opts = self.options
        golds = gold_answers(item.answer)
        extracted = extract_math_answer(
            item.completion,
            forms=tuple(opts.answer_forms),
            require_think=opts.require_think,
            free_text_fallback=opts.free_text_fallback,
        )
        if extracted is None:
            return Score(0.0, "no_answer")
        details = {"answer": extracted.text[:200], "form": extracted.form}
        if len(extracted.text) > opts.max_answer_chars:
            return Score(0.0, "answer_too_long", details=details)
        verdicts = [fast_verdict(g, extracted.text, opts.float_rounding) for g in golds]
        if any(v is True for v in verdicts):
            return Score(1.0, "correct", details={**details, "path": "fast"})
        if all(v is False for v in verdicts):
            return Score(0.0, "wrong", details={**details, "path": "fast"})
        return Job(
            fn=run_math_verify,
            args=(golds, extracted.text, extracted.is_latex, opts.float_rounding,
                  opts.numeric_precision, opts.strict),
            timeout_s=opts.timeout_s,
            soft_timeout_s=opts.timeout_s * opts.soft_timeout_fraction,
            finish=_finish(extracted.text),
            cacheable=True,
        )
