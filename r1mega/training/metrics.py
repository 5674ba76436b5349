"""What a run leaves behind: ``metrics.jsonl``, ``summary.json``, plots, a progress bar.

Only the rank that owns logging (global rank 0) writes. ``metrics.jsonl`` gets one JSON object
per logged step, flushed at once so a killed run keeps every line it printed; on resume, lines
from steps after the restored checkpoint are dropped so the file never holds two histories.
``summary.json`` is written atomically at the end. ``loggers`` (``trainer.loggers``) adds
TensorBoard and W&B sinks that get the same keys and values (``r1mega.training.sinks``).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Sequence

from r1mega.training.ckpt_layout import atomic_write_text
from r1mega.training.sinks import make_sinks, scalars


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):
        return _clean(value.item())
    return value


class MetricsLogger:
    """Append-only step metrics plus a tqdm progress bar with ETA (rank 0 only).

    ``loggers`` names extra sinks (``"tensorboard"``, ``"wandb"``), made on the logging rank only.
    """

    def __init__(self, run_dir: str | Path, stage: str, total_steps: int, enabled: bool, progress: bool = True,
                 *, loggers: Sequence[str] = ()):
        self.run_dir = Path(run_dir)
        self.stage = stage
        self.enabled = enabled
        self.path = self.run_dir / "metrics.jsonl"
        self.history: list[dict] = []
        self._bar = None
        self.sinks = make_sinks(list(loggers), self.run_dir, stage) if enabled else []
        if enabled and progress:
            from tqdm import tqdm

            self._bar = tqdm(total=total_steps, desc=stage, unit="step", dynamic_ncols=True)

    def resume_at(self, step: int) -> None:
        """Drop lines of steps > ``step`` (written after the checkpoint we resume from)."""
        if not self.enabled or not self.path.exists():
            return
        kept = [json.loads(l) for l in self.path.read_text().splitlines() if l.strip()]
        kept = [r for r in kept if r.get("stage") != self.stage or r.get("step", 0) <= step]
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        self.history = [r for r in kept if r.get("stage") == self.stage]
        if self._bar is not None:
            self._bar.update(step)

    def log(self, step: int, metrics: dict) -> None:
        if not self.enabled:
            return
        record = {"step": step, "stage": self.stage, "time": round(time.time(), 3)}
        record.update({k: _clean(v) for k, v in metrics.items()})
        self.history.append(record)
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record) + "\n")
        values = scalars({k: record[k] for k in metrics})
        for sink in self.sinks:
            sink.log(step, values)
        if self._bar is not None:
            shown = {k: record[k] for k in ("loss", "reward_mean", "lr") if isinstance(record.get(k), (int, float))}
            self._bar.set_postfix({k: f"{v:.4g}" for k, v in shown.items()}, refresh=False)
            self._bar.update(step - self._bar.n)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
        self.sinks = []
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def write_summary(run_dir: str | Path, summary: dict) -> None:
    """Merge ``summary`` into ``run_dir/summary.json`` atomically."""
    path = Path(run_dir) / "summary.json"
    current = json.loads(path.read_text()) if path.exists() else {}
    current.update(summary)
    atomic_write_text(path, json.dumps(current, indent=2, default=str) + "\n")
