"""Generate tests/rewards/data/math_labelled.jsonl: hand-labelled (completion, gold, label) triples.

Each entry of ``CASES`` is a gold answer in the style of MATH-500 with predictions that are
equivalent (label 1) and predictions that are not (label 0). Labels are human judgements of
mathematical equivalence, following math-verify's documented conventions where the
notation is ambiguous: ``50\\%`` means the number 50 (so it equals ``50`` but not ``0.5``),
units and degree signs are not part of the value, ``\\text{}`` answers ignore case, a gold
``x=2`` accepts ``2`` (and a gold ``2`` accepts ``x=2``), and decimals within 1e-6 are equal.

Predictions are wrapped in completion templates that exercise the extraction rules (R1
``\\boxed`` after ``</think>``, R1-Zero ``<answer>`` tags, a decoy boxed answer inside the
reasoning); ``EXTRACTION_CASES`` add completions whose answer must *not* be found.

Run ``python tests/rewards/make_math_labelled.py`` to regenerate (deterministic output).
"""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).parent / "data" / "math_labelled.jsonl"

# (category, gold, [equivalent predictions], [non-equivalent predictions])
CASES: list[tuple[str, str, list[str], list[str]]] = [
    ("integer", "405", ["405", "405.0", "+405", "\\text{405}"], ["404", "-405", "4050", "40.5"]),
    ("integer", "-7", ["-7", "- 7", "(-7)"], ["7", "-6", "-7.5"]),
    ("integer", "0", ["0", "0.0", "-0"], ["1", "0.1"]),
    ("integer", "1000000", ["1,000,000", "10^6", "1000000", "1\\,000\\,000"], ["100000", "10^7"]),
    ("integer", "3", ["\\frac{9}{3}", "3.", "\\sqrt{9}"], ["\\frac{1}{3}", "9"]),
    ("integer", "2016", ["2016"], ["2015", "2017", "20.16"]),
    ("integer", "300000", ["3\\times 10^5", "300,000", "3 \\cdot 10^5"], ["3\\times 10^4", "30000"]),
    ("decimal", "0.5", ["\\frac{1}{2}", "1/2", "\\dfrac12", "0.50", ".5"], ["0.05", "5", "\\frac{1}{3}"]),
    ("decimal", "3.14", ["3.140", "\\frac{314}{100}"], ["\\pi", "3.1", "3.15"]),
    ("decimal", "2.5", ["\\frac52", "5/2", "2\\frac{1}{2}", "2.50"], ["2.05", "25", "\\frac{2}{5}"]),
    ("decimal", "-1.25", ["-\\frac{5}{4}", "-1.250", "\\frac{-5}{4}"], ["1.25", "-1.2"]),
    ("decimal", "0.125", ["\\frac{1}{8}", "1/8"], ["0.0125", "\\frac{1}{4}"]),
    ("fraction", "\\frac{3}{4}", ["0.75", "3/4", "\\frac{6}{8}", "\\tfrac{3}{4}", "\\frac34"], ["\\frac{4}{3}", "0.74", "3"]),
    ("fraction", "-\\frac{1}{3}", ["\\frac{-1}{3}", "-1/3", "-\\dfrac{1}{3}"], ["\\frac{1}{3}", "-0.3333", "-3"]),
    ("fraction", "\\frac{7}{2}", ["3.5", "\\frac{14}{4}", "7/2"], ["\\frac{2}{7}", "2", "3.4"]),
    ("fraction", "\\frac{1}{12}", ["\\frac{2}{24}", "1/12"], ["\\frac{1}{11}", "12"]),
    ("fraction", "\\frac{25}{36}", ["\\left(\\frac{5}{6}\\right)^2", "\\frac{50}{72}"], ["\\frac{5}{6}", "\\frac{36}{25}"]),
    ("radical", "\\frac{\\sqrt{2}}{2}", ["\\sqrt{2}/2", "\\frac{\\sqrt2}{2}", "\\frac{1}{\\sqrt{2}}", "\\sqrt{\\frac{1}{2}}", "2^{-1/2}"],
     ["\\sqrt{2}", "\\frac{\\sqrt{3}}{2}", "\\frac{2}{\\sqrt{2}}"]),
    ("radical", "2\\sqrt{3}", ["\\sqrt{12}", "2 \\sqrt 3", "\\sqrt{3}\\cdot 2"], ["3\\sqrt{2}", "\\sqrt{6}", "2\\sqrt{2}"]),
    ("radical", "5\\sqrt{2}", ["\\sqrt{50}", "5 \\sqrt{2}"], ["\\sqrt{10}", "2\\sqrt{5}"]),
    ("radical", "\\sqrt{5}-1", ["-1+\\sqrt{5}", "\\sqrt5 - 1"], ["1-\\sqrt{5}", "\\sqrt{5}+1"]),
    ("radical", "3+2\\sqrt{2}", ["(1+\\sqrt{2})^2", "2\\sqrt{2}+3"], ["3-2\\sqrt2", "5\\sqrt{2}"]),
    ("radical", "\\frac{3\\sqrt{3}}{4}", ["\\frac{3}{4}\\sqrt{3}", "0.75\\sqrt{3}"], ["\\frac{3\\sqrt{3}}{2}", "\\frac{\\sqrt{3}}{4}"]),
    ("radical", "\\sqrt[3]{2}", ["2^{1/3}", "2^{\\frac{1}{3}}"], ["\\sqrt{2}", "2^{3}"]),
    ("pi", "4\\pi", ["4 \\pi", "\\pi \\cdot 4", "\\frac{8\\pi}{2}"], ["4", "2\\pi", "12.566"]),
    ("pi", "\\frac{\\pi}{3}", ["\\pi/3", "\\frac{1}{3}\\pi"], ["\\frac{\\pi}{6}", "60", "\\frac{3}{\\pi}"]),
    ("pi", "2\\pi-4", ["-4+2\\pi", "2(\\pi-2)"], ["4-2\\pi", "2\\pi+4"]),
    ("pi", "36\\pi", ["36 \\pi"], ["36", "6\\pi"]),
    ("expression", "x^2+2x+1", ["(x+1)^2", "1+2x+x^2"], ["x^2+1", "(x-1)^2"]),
    ("expression", "2x+3", ["3+2x", "2 x + 3"], ["2x-3", "3x+2"]),
    ("expression", "\\frac{x+1}{x-1}", ["(x+1)/(x-1)", "\\frac{1+x}{x-1}"], ["\\frac{x-1}{x+1}", "x+1"]),
    ("expression", "6x^2-5x+1", ["(2x-1)(3x-1)", "1-5x+6x^2"], ["(2x+1)(3x+1)", "6x^2+5x+1"]),
    ("expression", "a^2-b^2", ["(a-b)(a+b)", "-b^2+a^2"], ["(a-b)^2", "a^2+b^2"]),
    ("expression", "e^2", ["e^{2}"], ["2e", "e"]),
    ("expression", "p+q", ["q+p"], ["p-q", "pq"]),
    ("equation", "y=2x+3", ["y = 3 + 2x", "2x+3"], ["y=2x-3", "y=3x+2"]),
    ("equation", "x=2", ["2", "x = 2"], ["x=3", "3"]),
    ("equation", "2", ["x=2"], ["x=3"]),
    ("equation", "x^2+y^2=25", ["y^2+x^2=25"], ["x^2+y^2=5", "x^2-y^2=25"]),
    ("equation", "k=3", ["3", "k = 3"], ["x=3", "k=4"]),
    ("interval", "(1,2]", ["(1, 2]", "\\left(1,2\\right]"], ["[1,2]", "(1,2)", "(1,3]"]),
    ("interval", "[1,\\infty)", ["[1, \\infty)"], ["(1,\\infty)", "[0,\\infty)", "[-1,\\infty)"]),
    ("interval", "(-\\infty, 3) \\cup (5, \\infty)", ["(-\\infty,3)\\cup(5,\\infty)", "(5,\\infty)\\cup(-\\infty,3)"],
     ["(-\\infty,3]\\cup(5,\\infty)", "(3,5)"]),
    ("interval", "[-2, 7]", ["[-2,7]"], ["[-7,2]", "(-2,7)"]),
    ("interval", "(0,1)", ["(0, 1)"], ["[0,1]", "(1,0)"]),
    ("set", "\\{1,2\\}", ["\\{2,1\\}", "\\{1, 2\\}"], ["\\{1,3\\}", "\\{1,2,3\\}"]),
    ("set", "1, 2, 3", ["3, 2, 1", "\\{1,2,3\\}"], ["1, 2", "1, 2, 4"]),
    ("set", "-2, 3", ["3, -2", "3,-2"], ["2, -3", "-3, 2, 5"]),
    ("set", "\\emptyset", ["\\varnothing", "\\emptyset"], ["\\{0\\}", "0"]),
    ("tuple", "(1, -2, 3)", ["(1,-2,3)"], ["(1,2,3)", "(3,-2,1)"]),
    ("tuple", "(2, \\frac{1}{2})", ["(2, 0.5)", "(2, 1/2)"], ["(\\frac12, 2)", "(2, 2)"]),
    ("tuple", "(3, 4)", ["(3,4)"], ["(4,3)", "(3,5)"]),
    ("matrix", "\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}",
     ["\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", "\\begin{bmatrix} 1 & 2 \\\\ 3 & 4 \\end{bmatrix}"],
     ["\\begin{pmatrix} 1 & 3 \\\\ 2 & 4 \\end{pmatrix}", "\\begin{pmatrix} 4 & 3 \\\\ 2 & 1 \\end{pmatrix}"]),
    ("matrix", "\\begin{pmatrix} 2 \\\\ -1 \\end{pmatrix}", ["\\begin{pmatrix}2\\\\-1\\end{pmatrix}", "\\begin{pmatrix} 4/2 \\\\ -1 \\end{pmatrix}"],
     ["\\begin{pmatrix} -1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix} 2 \\\\ 1 \\end{pmatrix}"]),
    ("matrix", "\\begin{pmatrix} 1/2 \\\\ 0 \\end{pmatrix}", ["\\begin{pmatrix} 0.5 \\\\ 0 \\end{pmatrix}"],
     ["\\begin{pmatrix} 0 \\\\ 1/2 \\end{pmatrix}"]),
    ("percent", "50\\%", ["50", "50\\%", "50 \\%"], ["0.5", "5\\%", "500"]),
    ("percent", "25", ["25\\%"], ["0.25", "2.5\\%"]),
    ("percent", "12.5\\%", ["12.5"], ["0.125", "1.25\\%"]),
    ("unit", "12", ["12\\text{ cm}", "12 \\text{ inches}", "12\\mbox{ cm}"], ["13\\text{ cm}", "1.2"]),
    ("unit", "90", ["90^\\circ", "90^{\\circ}"], ["45^\\circ", "180"]),
    ("unit", "18.90", ["\\$18.90", "18.9"], ["18.09", "\\$19.80"]),
    ("unit", "\\$1.50", ["1.5", "\\$1.50"], ["\\$15", "0.5"]),
    ("unit", "48", ["48\\text{ square units}", "48 \\text{ sq ft}"], ["84", "4.8"]),
    ("text", "\\text{Monday}", ["Monday", "\\text{monday}", "\\textbf{Monday}"], ["\\text{Tuesday}", "Sunday"]),
    ("text", "\\text{(C)}", ["C", "(C)", "\\text{C}"], ["\\text{(B)}", "B"]),
    ("text", "\\text{even}", ["\\text{even}", "even"], ["\\text{odd}", "\\text{neither}"]),
    ("text", "\\text{Evelyn}", ["Evelyn", "\\text{Evelyn}"], ["\\text{Bob}", "\\text{Angela}"]),
    ("text", "\\text{no}", ["\\text{No}", "no"], ["\\text{yes}"]),
    ("infinity", "\\infty", ["\\infty", "+\\infty"], ["-\\infty", "0"]),
    ("complex", "1+i", ["i+1"], ["1-i", "i"]),
    ("complex", "-2+7i", ["7i-2"], ["2-7i", "-2-7i"]),
    ("base", "1011_2", ["1011_{2}"], ["1101_2"]),
]

REASONING = "Let me work through this carefully.\nFirst simplify, then check the result."
TEMPLATES = [
    "<think>\n{r}\n</think>\nThe answer is $\\boxed{{{p}}}$.",
    "<think>\n{r}\n</think>\n\nTherefore, the final answer is \\boxed{{{p}}}",
    "<think> {r} </think> <answer> {p} </answer>",
    "<think> {r} </think> <answer> The final answer is $\\boxed{{{p}}}$ </answer>",
    "<think>\n{r} A first guess would be \\boxed{{WRONG}}.\n</think>\nSo the answer is \\boxed{{{p}}}.",
    "<think>\n{r}\n</think>\nEarlier I wrote \\boxed{{WRONG}}, but correcting it: \\boxed{{{p}}}.",
]

# Completions whose right answer must not count (label 0), paired with a gold answer.
EXTRACTION_CASES: list[tuple[str, str]] = [
    ("<think>\nThe answer is \\boxed{405}, let me keep checking", "405"),          # never closed
    ("<think>\nThe answer is \\boxed{405}.\n</think>\nI could not decide.", "405"),  # only in reasoning
    ("The answer is \\boxed{\\frac{1}{2}}.", "\\frac{1}{2}"),                      # no reasoning block
    ("<think>\nso 7\n</think>\nThe answer is \\boxed{7}, no wait \\boxed{8}.", "7"),  # last boxed wins
    ("<think> ok </think> <answer> 12 </answer> then \\boxed{13}", "13"),           # answer tag wins
    ("<think>\nok\n</think>\nThe answer is 405.", "405"),                            # not boxed
    ("<think>\nok\n</think>\n\\boxed{}", "0"),                                       # empty box
    ("<think>\nok\n</think>\n\\boxed{\\frac{1}{2}", "\\frac{1}{2}"),                # unclosed brace
]


def _wrong_for(gold: str) -> str:
    return "-1" if gold.strip() != "-1" else "2"


def build() -> list[dict]:
    """All labelled rows, in a fixed order."""
    rows = []
    n = 0
    for category, gold, equivalents, others in CASES:
        for label, preds in ((1, equivalents), (0, others)):
            for pred in preds:
                template = TEMPLATES[n % len(TEMPLATES)]
                n += 1
                completion = template.format(r=REASONING, p=pred).replace("WRONG", _wrong_for(gold))
                rows.append({"category": category, "gold": gold, "pred": pred, "completion": completion, "label": label})
    for completion, gold in EXTRACTION_CASES:
        rows.append({"category": "extraction", "gold": gold, "pred": None, "completion": completion, "label": 0})
    return rows


def main() -> None:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    rows = build()
    with OUT.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    positives = sum(r["label"] for r in rows)
    print(f"wrote {len(rows)} rows ({positives} positive, {len(rows) - positives} negative) to {OUT}")


if __name__ == "__main__":
    main()
