"""The end of a pipeline: one evaluation per model, a printed table and a PNG of the curves.

``pipeline.report`` maps each model label to where its held-out evaluation already is,
``'STEP:KEY'`` in that step's summary.json: RL stages evaluate their starting point
(``eval_before``) and result (``eval_after``) anyway, and ``stage=eval`` steps write ``eval``.
Nothing is evaluated twice. Every evaluation of a pipeline uses the same held-out split,
k and sampling settings (``pipeline.common``), so the rows compare.

The PNG has one panel per training step (SFT loss, or RL reward and accuracy against steps)
and a last panel with pass@1 / cons@k / greedy per model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from r1mega.training.plots import draw_series


def _summary(step_dir: Path) -> dict:
    try:
        return json.loads((step_dir / "summary.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def collect(pipeline_dir: Path, report: dict) -> dict[str, Optional[dict]]:
    """label -> the eval dict (pass@1, cons@k, greedy, ...) or None when it is missing."""
    out = {}
    for label, ref in report.items():
        step, _, key = str(ref).partition(":")
        result = _summary(pipeline_dir / step).get(key)
        if isinstance(result, dict) and "pass@1" in result:
            k = result.get("k")
            out[label] = {**result, "cons@k": result.get(f"cons@{k}"), "source": ref}
        else:
            out[label] = None
    return out


def table(evals: dict[str, Optional[dict]]) -> str:
    """A Markdown table of the evaluations."""
    ks = {e.get("k") for e in evals.values() if e}
    k = ks.pop() if len(ks) == 1 else "k"
    lines = [f"| model | pass@1 | cons@{k} | greedy | mean length |", "|---|---:|---:|---:|---:|"]
    for label, e in evals.items():
        if e is None:
            lines.append(f"| {label} | - | - | - | - |")
            continue
        lines.append(f"| {label} | {e['pass@1']:.3f} | {e['cons@k']:.3f} | {e['greedy']:.3f} | "
                     f"{e.get('mean_response_length', float('nan')):.1f} |")
    return "\n".join(lines)


def _history(step_dir: Path) -> list[dict]:
    path = step_dir / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot(pipeline_dir: Path, step_names: list[str], evals: dict, path: Path) -> Optional[Path]:
    """Training curves of every step that has metrics, then a bar chart of the evaluations."""
    panels = []
    for name in step_names:
        rows = _history(pipeline_dir / name)
        wanted = ("reward_mean", "accuracy") if any("reward_mean" in r for r in rows) else ("loss",)  # RL or SFT
        keys = [k for k in wanted if any(isinstance(r.get(k), (int, float)) for r in rows)]
        if keys:
            panels.append((name, rows, keys))
    scored = {k: v for k, v in evals.items() if v}
    if not panels and not scored:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(panels) + (1 if scored else 0)
    cols = min(n, 4)
    fig, axes = plt.subplots((n + cols - 1) // cols, cols, figsize=(4 * cols, 3.2 * ((n + cols - 1) // cols)),
                             squeeze=False)
    flat = list(axes.flat)
    for ax, (name, rows, keys) in zip(flat, panels):
        for key in keys:
            draw_series(ax, rows, key, label=key)
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if scored:
        ax = flat[len(panels)]
        labels = list(scored)
        width = 0.27
        for j, metric in enumerate(("pass@1", "cons@k", "greedy")):
            ax.bar([i + (j - 1) * width for i in range(len(labels))], [scored[m][metric] or 0 for m in labels],
                   width, label=metric)
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels, rotation=45, ha="right", fontsize=7)
        ax.set_title("held-out evaluation")
        ax.legend(fontsize=7)
    for ax in flat[n:]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
