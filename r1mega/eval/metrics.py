"""The paper's evaluation metrics, as pure functions.

* ``pass@1`` is the mean correctness over k samples per question (temperature 0.6, top-p 0.95
  in the paper), averaged over questions.
* ``pass@k`` uses the unbiased estimator 1 - C(n - c, k) / C(n, k) for n samples of which c are
  correct (Chen et al., 2021), so it is meaningful for any k <= n.
* ``cons@k`` is majority voting: answers are grouped into classes of mathematically
  equivalent values (``0.5``, ``\\frac{1}{2}`` and ``1/2`` are one class), the largest class
  wins (ties: the class seen first), and the question counts as solved when that class is
  correct. Samples without an answer never vote.
"""

from __future__ import annotations

from math import comb
from typing import Callable, Optional


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn without replacement from n is correct."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def cluster_answers(answers: list[Optional[str]], same: Callable[[str, str], bool]) -> list[list[int]]:
    """Indices of non-empty answers grouped into equivalence classes, in order of first appearance."""
    classes: list[list[int]] = []
    for i, a in enumerate(answers):
        if a is None:
            continue
        for cls in classes:
            if same(answers[cls[0]], a):
                cls.append(i)
                break
        else:
            classes.append([i])
    return classes


def majority_correct(answers: list[Optional[str]], correct: list[bool], same: Callable[[str, str], bool]) -> bool:
    """cons@k for one question: is the largest class of equivalent answers a correct one?"""
    classes = cluster_answers(answers, same)
    if not classes:
        return False
    best = max(classes, key=len)  # max keeps the first of equal sizes
    return bool(correct[best[0]])


def normalize_answer(text: str) -> str:
    """Cheap canonical form used before any symbolic comparison."""
    return text.replace(" ", "").replace("$", "").replace("\\!", "").replace("dfrac", "frac").strip(".")
