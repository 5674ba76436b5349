"""Curve panels: short series get a marker per point (a one-step stage would draw nothing)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from r1mega.training.plots import MARKERS_UP_TO, draw_series  # noqa: E402


def test_short_series_get_markers_and_skip_missing_values():
    fig, ax = plt.subplots()
    draw_series(ax, [{"step": 1, "loss": 2.0}, {"step": 2}, {"step": 3, "loss": "n/a"}], "loss", label="loss")
    (line,) = ax.get_lines()
    assert line.get_marker() == "o" and line.get_label() == "loss"
    assert list(line.get_xdata()) == [1] and list(line.get_ydata()) == [2.0]
    plt.close(fig)


def test_long_series_are_plain_lines():
    fig, ax = plt.subplots()
    draw_series(ax, [{"step": i, "loss": 1.0 / i} for i in range(1, MARKERS_UP_TO + 2)], "loss")
    assert ax.get_lines()[0].get_marker() in (None, "None", "")
    plt.close(fig)
