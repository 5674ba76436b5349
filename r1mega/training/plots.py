"""PNG plots of a run's curves (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

MARKERS_UP_TO = 20
"""A series with at most this many points gets a marker per point: one point alone draws no line."""


def draw_series(ax, history: list[dict], key: str, **kwargs) -> None:
    """Plot ``key`` against ``step`` over the rows of ``history`` that hold a number for it."""
    pts = [(r["step"], r[key]) for r in history if isinstance(r.get(key), (int, float))]
    ax.plot([p[0] for p in pts], [p[1] for p in pts], lw=1.5,
            marker="o" if len(pts) <= MARKERS_UP_TO else None, ms=4, **kwargs)


def plot_curves(history: list[dict], keys: list[str], path: str | Path, title: str = "") -> Path | None:
    """One panel per metric in ``keys`` that the history has; returns the file or None."""
    present = [k for k in keys if any(isinstance(r.get(k), (int, float)) for r in history)]
    if not present:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(present), figsize=(4 * len(present), 3.2), squeeze=False)
    for ax, key in zip(axes[0], present):
        draw_series(ax, history, key)
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
