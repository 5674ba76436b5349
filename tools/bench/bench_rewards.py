"""Throughput of the reward subsystem (not a unit test): prints a small table.

Workloads, each through a real RewardManager with its worker pool and hard timeouts on:

``math/synthetic``
    the bundled arithmetic task: integer answers, GRPO groups of 8 completions per prompt,
    default recipe (math_accuracy + format). Decided by the fast path.
``math/MATH-500 mix``
    fresh random gold answers with the answer-type mix of MATH-500 (mostly integers, then
    fractions, radicals, multiples of pi, points, intervals, text, matrices, expressions);
    per group of 8 completions, half repeat the gold's spelling, a tenth use an equivalent
    spelling and the rest are wrong. The cross-batch cache is off.
``math/mix +1 hang/batch``
    the same with one ``9^{9^{9^{9}}}`` per batch of 512 and a 1 s limit: the cost of an
    enforced timeout (the worker is interrupted, retires and is replaced).
``math/hard forms``
    every answer is one of the labelled set's non-trivial spellings (intervals, sets,
    equations, radicals...), so nearly every item needs sympy.
``math/unique-sympy``
    worst case: every item is a different polynomial identity that only sympy can decide.
``code/python``
    stdin/stdout programs with 3 tests each (half of them wrong), for 1..N workers.
``code/cpp``
    the same with C++ (compilation dominates).

Usage: ``python tools/bench/bench_rewards.py [--workers 2] [--quick]``
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import time
from pathlib import Path

from r1mega.rewards import RewardManager

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "rewards"))

GROUP = 8
THINK = "<think>\nLet me compute this step by step, checking each partial result.\n</think>\n"


def synthetic_items(n: int, rng: random.Random) -> list[dict]:
    items = []
    for _ in range(n // GROUP):
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        for _ in range(GROUP):
            guess = a * b if rng.random() < 0.6 else a * b + rng.randint(-9, 9)
            items.append({"completion": f"{THINK}The answer is \\boxed{{{guess}}}.", "data_source": "synthetic",
                          "answer": str(a * b)})
    return items


def _answer_kinds(rng: random.Random):
    """Generators of (gold, equivalent spellings, wrong answers) by MATH-500 answer type."""
    def integer():
        v = rng.randint(-20, 2000)
        return str(v), [str(v)], [str(v + rng.choice([-2, -1, 1, 3, 10])), str(-v) if v else "1"]

    def fraction():
        a, b = rng.randint(1, 40), rng.choice([3, 7, 9, 11, 13, 17])
        return f"\\frac{{{a}}}{{{b}}}", [f"\\dfrac{{{a}}}{{{b}}}", f"{a}/{b}", f"\\frac{{{2 * a}}}{{{2 * b}}}"], \
            [f"\\frac{{{b}}}{{{a}}}", f"\\frac{{{a + 1}}}{{{b}}}"]

    def decimal():
        v = rng.randint(1, 999) / 8
        return f"{v:g}", [f"{v:.3f}", f"\\frac{{{int(v * 8)}}}{{8}}"], [f"{v + 0.5:g}", f"{v * 10:g}"]

    def radical():
        k, m = rng.randint(2, 9), rng.choice([2, 3, 5, 6, 7])
        return f"{k}\\sqrt{{{m}}}", [f"\\sqrt{{{k * k * m}}}", f"{k} \\sqrt{{{m}}}"], [f"{k}\\sqrt{{{m + 1}}}", f"{k + 1}\\sqrt{{{m}}}"]

    def pi():
        k = rng.randint(2, 60)
        return f"{k}\\pi", [f"{k} \\pi", f"\\pi {k}"], [f"{k + 1}\\pi", f"{k}"]

    def interval():
        a, b = sorted(rng.sample(range(-20, 20), 2))
        return f"[{a}, {b})", [f"[{a},{b})"], [f"({a}, {b})", f"[{a}, {b + 1})"]

    def point():
        a, b = rng.randint(-9, 9), rng.randint(-9, 9)
        return f"({a}, {b})", [f"({a},{b})"], [f"({b}, {a + 1})", f"({a}, {b + 2})"]

    def text():
        word = rng.choice(["Monday", "even", "odd", "(A)", "(B)", "(C)", "(D)", "Evelyn", "yes"])
        other = rng.choice(["Tuesday", "(E)", "no", "Bob"])
        return f"\\text{{{word}}}", [f"\\text{{{word}}}", word], [f"\\text{{{other}}}"]

    def matrix():
        a, b, c, d = (rng.randint(-9, 9) for _ in range(4))
        m = f"\\begin{{pmatrix}} {a} & {b} \\\\ {c} & {d} \\end{{pmatrix}}"
        return m, [m.replace(" ", "")], [m.replace(f"{a} &", f"{a + 1} &", 1)]

    def expression():
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        return f"x^2+{a + b}x+{a * b}", [f"(x+{a})(x+{b})", f"x^2 + {a + b}x + {a * b}"], [f"(x+{a})(x-{b})"]

    # approximate shares of answer types in MATH-500
    return [(integer, 0.58), (fraction, 0.10), (decimal, 0.03), (radical, 0.08), (pi, 0.04), (interval, 0.03),
            (point, 0.04), (text, 0.04), (matrix, 0.02), (expression, 0.04)]


def mixed_items(n: int, rng: random.Random) -> list[dict]:
    """MATH-500-like answer types; 60% correct (mostly in the gold's own spelling), 40% wrong."""
    kinds = _answer_kinds(rng)
    makers, weights = zip(*kinds)
    items = []
    while len(items) < n:
        gold, equivalent, wrong = rng.choices(makers, weights)[0]()
        for _ in range(GROUP):
            roll = rng.random()
            pred = gold if roll < 0.5 else rng.choice(equivalent) if roll < 0.6 else rng.choice(wrong)
            items.append({"completion": f"{THINK}So the answer is $\\boxed{{{pred}}}$.", "data_source": "math",
                          "answer": gold})
    return items[:n]


def hard_form_items(n: int, rng: random.Random) -> list[dict]:
    """Every answer drawn from the labelled set's non-trivial spellings (intervals, sets, ...)."""
    from make_math_labelled import CASES

    items = []
    while len(items) < n:
        _, gold, equivalent, other = rng.choice(CASES)
        for _ in range(GROUP):
            pred = rng.choice(equivalent if rng.random() < 0.6 else other)
            items.append({"completion": f"{THINK}So the answer is $\\boxed{{{pred}}}$.", "data_source": "math",
                          "answer": gold})
    return items[:n]


def with_hangs(items: list[dict], every: int) -> list[dict]:
    """Replace one item per ``every`` with an answer that hangs sympy (9^9^9^9)."""
    hang = f"{THINK}\\boxed{{9^{{9^{{9^{{9}}}}}}}}"
    return [dict(item, completion=hang) if i % every == every // 2 else item for i, item in enumerate(items)]


def unique_sympy_items(n: int) -> list[dict]:
    items = []
    for i in range(n):
        a, b = i % 97 + 1, i // 97 + 1
        pred = f"(x+{a})(x+{b})"
        gold = f"x^2+{a + b}x+{a * b}"
        items.append({"completion": f"{THINK}\\boxed{{{pred}}}", "data_source": "math", "answer": gold})
    return items


def code_items(n: int, language: str) -> list[dict]:
    programs = {
        "python": ("print(sum(map(int, input().split())))", "print(sum(map(int, input().split())) + 1)"),
        "cpp": ("#include <iostream>\nint main(){long a,b;std::cin>>a>>b;std::cout<<a+b<<std::endl;}",
                "#include <iostream>\nint main(){long a,b;std::cin>>a>>b;std::cout<<a+b+1<<std::endl;}"),
    }
    tests = {"inputs": ["1 2\n", "10 20\n", "-5 5\n"], "outputs": ["3\n", "30\n", "0\n"]}
    items = []
    for i in range(n):
        code = programs[language][i % 2] + f"\n{'#' if language == 'python' else '//'} variant {i}\n"
        items.append({"completion": f"{THINK}```{language}\n{code}```", "data_source": "code", "tests": tests})
    return items


def run(name: str, config: dict, items: list[dict], batch: int, workers: int, warm: dict) -> tuple:
    with RewardManager({**config, "num_workers": workers}) as rm:
        rm.score(warm)  # start and warm the pool outside the timing
        start = time.perf_counter()
        rewards = []
        for i in range(0, len(items), batch):
            rewards += [r.reward for r in rm.score_batch(items[i:i + batch])]
        elapsed = time.perf_counter() - start
    return name, len(items), workers, elapsed, len(items) / elapsed, sum(rewards) / len(rewards)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="smaller workloads")
    args = parser.parse_args()
    rng = random.Random(0)
    scale = 1 if args.quick else 4
    math_sources = {"sources": {
        "synthetic": {"components": [{"name": "math_accuracy"}, {"name": "format"}]},
        "math": {"components": [{"name": "math_accuracy"}, {"name": "format"}]},
    }}
    warm_math = {"completion": f"{THINK}\\boxed{{x+1}}", "data_source": "math", "answer": "1+x"}
    rows = [
        run("math/synthetic", {**math_sources}, synthetic_items(2048 * scale, rng), 512, args.workers, warm_math),
        run("math/MATH-500 mix", {**math_sources, "cache_size": 0}, mixed_items(1024 * scale, rng), 512,
            args.workers, warm_math),
        run("math/mix +1 hang/batch", {**math_sources, "cache_size": 0, "sources": {"math": {"components": [
            {"name": "math_accuracy", "options": {"timeout_s": 1.0}}, {"name": "format"}]}}},
            with_hangs(mixed_items(1024 * scale, rng), every=512), 512, args.workers, warm_math),
        run("math/hard forms", {**math_sources, "cache_size": 0}, hard_form_items(512 * scale, rng), 512,
            args.workers, warm_math),
        run("math/unique-sympy", {**math_sources, "cache_size": 0}, unique_sympy_items(256 * scale), 256,
            args.workers, warm_math),
    ]
    code_config = {"sources": {"code": {"components": [{"name": "code_accuracy"}]}}}
    warm_code = code_items(1, "python")[0]
    for workers in sorted({1, args.workers}):
        rows.append(run("code/python (3 tests)", code_config, code_items(48 * scale, "python"), 64, workers, warm_code))
    if shutil.which("g++"):
        rows.append(run("code/cpp (3 tests)", code_config, code_items(8 * scale, "cpp"), 64, args.workers, warm_code))
    print(f"{'workload':<24}{'items':>7}{'workers':>9}{'seconds':>9}{'items/s':>10}{'mean reward':>13}")
    for name, n, workers, elapsed, rate, mean in rows:
        print(f"{name:<24}{n:>7}{workers:>9}{elapsed:>9.2f}{rate:>10.1f}{mean:>13.3f}")


if __name__ == "__main__":
    main()
