"""The bundled verifiable reasoning task: multi-digit arithmetic with worked solutions.

Each problem is an integer expression such as ``47 + 38 - 19`` evaluated left to right. Its
reference solution is written the way R1 writes: column-by-column reasoning inside
``<think>...</think>``, then a one-line summary with the final answer in ``\\boxed{}``::

    <think>
    47 + 38: 7 + 8 = 15, write 5 carry 1. 4 + 3 + 1 = 8. So 47 + 38 = 85.
    85 - 19: 5 - 9 borrow, 15 - 9 = 6. 8 - 1 - 1 = 6. So 85 - 19 = 66.
    </think>
    The answer is \\boxed{66}.

A shorter ``chain`` style rewrites the remaining expression after each operation, which is
what a tiny model can follow (every line copies the tail of the line above)::

    <think>
    9 + 1 - 3
    = 10 - 3
    = 7
    </think>
    The answer is \\boxed{7}.

The ``aligned`` style is the chain with each line indented by the terms already consumed, so
every line has the same number of tokens: each token copies the one a line above, and each
running value sits under the operand it absorbed (``max_value`` keeps those values one digit)::

    4 - 3 - 0 + 0 + 2
       1 - 0 + 0 + 2
          1 + 0 + 2
             1 + 2
                3

The answer is exact, so rewards are rules, as in the paper.

**Long and short CoT.** Cold-start data is a mix of sources, and R1's RL learns to think
longer because longer reasoning is what gets rewarded. ``short_fraction`` reproduces that
at toy scale: that share of the *train* responses is short CoT, the expression and its value
on one line (``9 + 1 - 3 = 7``), skipping the intermediate results. A model fine-tuned on the
mix has two habits, and GRPO has to discover which one pays. Which habit is more accurate is
not fixed by the task: on 3-term 1-digit sums the tiny model answers in one line as well as
in steps when it gets as much data for it (docs/results/2026-11-24-cpu-grpo-learning.md). On
5-term sums with running values in [0, 4] (``aligned``), the one-line answer stays near chance
while the steps become exact, and GRPO learns to think in steps
(docs/results/2026-12-04-cpu-grpo-learns.md).
The test split always carries long solutions.

Generation is a pure function of the config: the same seed gives the same problems on every
machine, and the train and test splits are disjoint by construction (a problem's split is
decided by a hash of its text, and duplicates are dropped).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Optional

from r1mega.config.errors import ConfigError


@dataclass
class SyntheticTaskConfig:
    """Shape and size of the synthetic arithmetic task."""

    seed: int = 0
    """Generator seed; the same seed gives the same problems everywhere."""
    num_train: int = 10000
    """Problems in the train split."""
    num_test: int = 256
    """Problems in the held-out test split (never in train)."""
    min_terms: int = 2
    """Fewest numbers in an expression."""
    max_terms: int = 2
    """Most numbers in an expression."""
    max_digits: int = 2
    """Largest operand length in digits."""
    operations: tuple = ("+", "-")
    """Operators to draw from (left-to-right evaluation; subtraction never goes negative)."""
    test_fraction_per_mille: int = 50
    """Share of the problem space (per mille, by text hash) reserved for the test split."""
    style: str = "columns"
    """Worked solutions: 'columns' (column by column with carries and borrows) or 'chain'
    (the expression rewritten after each operation; short, for tiny models) or 'aligned' (the
    chain with every line indented by the consumed terms: constant line length in tokens)."""
    short_fraction: float = 0.0
    """Share of train responses written as short CoT (expression = value, no intermediate
    steps), chosen per problem by text hash; see the module doc. 0 keeps all long."""
    max_value: Optional[int] = None
    """Cap on every running value: operands are drawn so that each intermediate result stays
    in [0, max_value] (with 9 and 1-digit operands every step is a one-digit fact). None: no
    cap beyond non-negative subtraction."""

    def validate(self, prefix: str = "data.synthetic") -> None:
        if not 2 <= self.min_terms <= self.max_terms:
            raise ConfigError(f"{prefix}.min_terms/max_terms must satisfy 2 <= min <= max")
        if not 1 <= self.max_digits <= 6:
            raise ConfigError(f"{prefix}.max_digits={self.max_digits} must be in [1, 6]")
        bad = [op for op in self.operations if op not in ("+", "-")]
        if bad or not self.operations:
            raise ConfigError(f"{prefix}.operations={list(self.operations)} must be a non-empty subset of ['+', '-']")
        if not 0 < self.test_fraction_per_mille < 1000:
            raise ConfigError(f"{prefix}.test_fraction_per_mille must be in (0, 1000)")
        if self.style not in STYLES:
            raise ConfigError(f"{prefix}.style={self.style!r} is not one of {list(STYLES)}")
        if not 0.0 <= self.short_fraction <= 1.0:
            raise ConfigError(f"{prefix}.short_fraction={self.short_fraction} must be in [0, 1]")
        if self.max_value is not None and not 1 <= self.max_value:
            raise ConfigError(f"{prefix}.max_value={self.max_value} must be a positive integer or null")


def _columns_add(a: int, b: int) -> str:
    da, db = str(a)[::-1], str(b)[::-1]
    steps, carry = [], 0
    for i in range(max(len(da), len(db))):
        x = int(da[i]) if i < len(da) else 0
        y = int(db[i]) if i < len(db) else 0
        total = x + y + carry
        terms = f"{x} + {y}" + (f" + {carry}" if carry else "")
        if total >= 10:
            steps.append(f"{terms} = {total}, write {total % 10} carry 1.")
        else:
            steps.append(f"{terms} = {total}.")
        carry = total // 10
    if carry:
        steps.append("write the carry 1.")
    return " ".join(steps)


def _columns_sub(a: int, b: int) -> str:
    da, db = str(a)[::-1], str(b)[::-1]
    steps, borrow = [], 0
    for i in range(len(da)):
        x = int(da[i]) - borrow
        y = int(db[i]) if i < len(db) else 0
        left = f"{da[i]} - {y}" + (" - 1" if borrow else "")
        if x < y:
            steps.append(f"{left} borrow, {x + 10} - {y} = {x + 10 - y}.")
            borrow = 1
        else:
            steps.append(f"{left} = {x - y}.")
            borrow = 0
    return " ".join(steps)


def _expression(numbers: list[int], ops: list[str]) -> str:
    return " ".join([str(numbers[0])] + [f"{o} {n}" for o, n in zip(ops, numbers[1:])])


def _apply(value: int, op: str, n: int) -> int:
    return value + n if op == "+" else value - n


def _chain_steps(numbers: list[int], ops: list[str]) -> list[str]:
    """The remaining expression after each operation (the first entry is the whole one)."""
    steps = [_expression(numbers, ops)]
    while ops:
        numbers = [_apply(numbers[0], ops[0], numbers[1])] + numbers[2:]
        ops = ops[1:]
        steps.append(_expression(numbers, ops))
    return steps


def solve_chain(numbers: list[int], ops: list[str]) -> tuple[str, int]:
    """Rewrite the expression after each operation, one line per step, and the final value."""
    steps = _chain_steps(numbers, ops)
    return "\n".join([steps[0]] + ["= " + s for s in steps[1:]]), int(steps[-1])


def solve_aligned(numbers: list[int], ops: list[str]) -> tuple[str, int]:
    """The chain with each line indented by the terms already consumed (3 spaces each), so
    every line has the same number of tokens and each running value sits under the operand it
    absorbed."""
    steps = _chain_steps(numbers, ops)
    return "\n".join(" " * (3 * i) + s for i, s in enumerate(steps)), int(steps[-1])


def solve_short(numbers: list[int], ops: list[str]) -> tuple[str, int]:
    """Short CoT: the expression and its value on one line."""
    value = numbers[0]
    for op, n in zip(ops, numbers[1:]):
        value = _apply(value, op, n)
    return f"{_expression(numbers, ops)} = {value}", value


def solve(numbers: list[int], ops: list[str]) -> tuple[str, int]:
    """The column-by-column reasoning (one line per operation) and the final value."""
    value, lines = numbers[0], []
    for op, n in zip(ops, numbers[1:]):
        work = _columns_add(value, n) if op == "+" else _columns_sub(value, n)
        result = _apply(value, op, n)
        lines.append(f"{value} {op} {n}: {work} So {value} {op} {n} = {result}.")
        value = result
    return "\n".join(lines), value


def format_response(reasoning: str, answer: int) -> str:
    return f"<think>\n{reasoning}\n</think>\nThe answer is \\boxed{{{answer}}}."


_SOLVERS = {"columns": solve, "chain": solve_chain, "aligned": solve_aligned}
STYLES = tuple(_SOLVERS)


def _draw(rng: random.Random, cfg: SyntheticTaskConfig) -> tuple[list[int], list[str]]:
    terms = rng.randint(cfg.min_terms, cfg.max_terms)
    hi = 10**cfg.max_digits - 1
    cap = cfg.max_value
    numbers, ops = [rng.randint(0, hi if cap is None else min(hi, cap))], []
    value = numbers[0]
    for _ in range(terms - 1):
        op = rng.choice(list(cfg.operations))
        if op == "-":
            n = rng.randint(0, min(value, hi))
        else:
            n = rng.randint(0, hi if cap is None else min(hi, cap - value))
        numbers.append(n)
        ops.append(op)
        value = _apply(value, op, n)
    return numbers, ops


def _hash_below(question: str, salt: bytes, per_mille: float) -> bool:
    digest = hashlib.sha256(salt + question.encode()).digest()
    return int.from_bytes(digest[:4], "big") % 1000 < per_mille


def _is_test(question: str, per_mille: int) -> bool:
    return _hash_below(question, b"", per_mille)


def _reasoning(numbers: list[int], ops: list[str], expr: str, split: str, cfg: SyntheticTaskConfig):
    if split == "train" and _hash_below(expr, b"short:", 1000 * cfg.short_fraction):
        return solve_short(numbers, ops)
    return _SOLVERS[cfg.style](numbers, ops)


def generate(cfg: SyntheticTaskConfig) -> dict[str, list[dict]]:
    """Both splits as lists of records ``{id, prompt, response, answer, data_source}``."""
    cfg.validate()
    rng = random.Random(cfg.seed)
    splits: dict[str, list[dict]] = {"train": [], "test": []}
    want = {"train": cfg.num_train, "test": cfg.num_test}
    seen: set[str] = set()
    attempts, limit = 0, 50 * (cfg.num_train + cfg.num_test) + 10_000
    while any(len(splits[s]) < want[s] for s in splits):
        attempts += 1
        if attempts > limit:
            raise ValueError(
                f"data.synthetic: could only find {len(splits['train'])} train / {len(splits['test'])} "
                f"test distinct problems with max_digits={cfg.max_digits}, max_terms={cfg.max_terms}; "
                "lower num_train/num_test or widen the task"
            )
        numbers, ops = _draw(rng, cfg)
        expr = _expression(numbers, ops)
        if expr in seen:
            continue
        seen.add(expr)
        split = "test" if _is_test(expr, cfg.test_fraction_per_mille) else "train"
        if len(splits[split]) >= want[split]:
            continue
        reasoning, answer = _reasoning(numbers, ops, expr, split, cfg)
        splits[split].append(
            {
                "id": f"synthetic-{split}-{len(splits[split])}",
                "prompt": f"Compute {expr}.",
                "response": format_response(reasoning, answer),
                "answer": str(answer),
                "data_source": "synthetic",
            }
        )
    return splits
