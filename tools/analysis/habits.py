"""Held-out accuracy split by reasoning habit, from an evaluation's samples.

The synthetic task's cold start mixes two habits (``data.synthetic.short_fraction``): worked
steps, one line per operation, and a one-line answer (``4 - 3 - 0 + 0 + 2 = 3``). GRPO gains
what it gains by moving samples from the worse habit to the better one, so the interesting
figures are each habit's share and accuracy before and after RL:

    r1mega-train stage=eval trainer.init_from=CKPT evaluation.save_samples=true ... hydra.run.dir=EV
    python tools/analysis/habits.py EV/eval_samples.jsonl
    python tools/analysis/habits.py RL_RUN/eval_samples_before.jsonl RL_RUN/eval_samples_after.jsonl

A response counts as "steps" when its reasoning (inside ``<think>...</think>``) has more than
one non-empty line. Greedy responses are left out: the split is over the k sampled ones, the
same responses pass@1 averages.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def habit(completion: str) -> str:
    reasoning = completion.split("<think>", 1)[-1].split("</think>", 1)[0]
    lines = [line for line in reasoning.splitlines() if line.strip()]
    return "steps" if len(lines) > 1 else "one_line"


def split(samples: list[dict]) -> dict:
    sampled = [s for s in samples if not s.get("greedy")]
    if not sampled:
        raise ValueError("no sampled responses (only greedy ones?)")
    out = {"n": len(sampled), "pass@1": sum(s["score"] for s in sampled) / len(sampled)}
    for name in ("steps", "one_line"):
        mine = [s for s in sampled if habit(s["completion"]) == name]
        out[f"{name}_share"] = len(mine) / len(sampled)
        out[f"{name}_accuracy"] = sum(s["score"] for s in mine) / len(mine) if mine else None
    return out


def read(path: Path) -> list[dict]:
    from r1mega.data.jsonl import json_lines

    return [row for _, row in json_lines(path, "samples file")]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+", type=Path, help="eval_samples*.jsonl files")
    args = ap.parse_args(argv)
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    print("| file | samples | pass@1 | steps share | steps acc | one-line share | one-line acc |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for path in args.files:
        try:
            r = split(read(path))
        except (OSError, ValueError) as e:
            print(f"habits: error: {e}", file=sys.stderr)
            return 2
        print(f"| {path} | {r['n']} | {fmt(r['pass@1'])} | {fmt(r['steps_share'])} | {fmt(r['steps_accuracy'])} "
              f"| {fmt(r['one_line_share'])} | {fmt(r['one_line_accuracy'])} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
