"""How a pipeline knows which steps are finished: ``<step dir>/DONE.json``.

The orchestrator writes DONE.json atomically *after* a step's process exited successfully,
so it exists only for complete steps -- never for one that was killed, whose directory then
holds a partial run that the stage itself resumes (training stages from their latest
checkpoint, dataset stages from their chunk manifests) when the step runs again.

DONE.json records the step's resolved overrides (its fingerprint). A rerun whose overrides
differ does not silently reuse the old result: it stops with an error that names the step and
the changed overrides, and the user chooses a new pipeline directory or deletes the step's
directory (and those after it) to redo them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

from r1mega.config.errors import ConfigError
from r1mega.training.ckpt_layout import atomic_write_text

DONE = "DONE.json"


def read_done(step_dir: Path) -> Optional[dict]:
    try:
        return json.loads((Path(step_dir) / DONE).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def check_unchanged(step: str, done: dict, fingerprint: list) -> None:
    """ConfigError when a finished step was produced with other overrides than now."""
    old = done.get("fingerprint")
    if old == fingerprint:
        return
    added = [o for o in fingerprint if o not in (old or [])]
    removed = [o for o in (old or []) if o not in fingerprint]
    raise ConfigError(
        f"pipeline step {step!r} finished earlier with other settings (now also {added}, no longer {removed}); "
        "run in a new directory (hydra.run.dir=...) or delete the step's directory to redo it"
    )


def mark_done(step_dir: Path, step: str, kind: str, fingerprint: list, wall_time_s: float) -> dict:
    record = {"step": step, "kind": kind, "fingerprint": fingerprint, "wall_time_s": wall_time_s,
              "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    Path(step_dir).mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(step_dir) / DONE, json.dumps(record, indent=2) + "\n")
    return record
