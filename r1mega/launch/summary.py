"""Collect every sweep point's ``summary.json`` into one table (``r1mega-launch summarize``).

A sweep directory holds one run directory per point (``<runs_dir>/<name>/<index>``), each
with the ``summary.json`` that ``r1mega-train`` writes at the end of a run. A point's
overrides come from Hydra's ``.hydra/overrides.yaml`` in its run directory, or else from the
``sweep.json`` manifest ``r1mega-launch`` writes at submission. The table has one row per
point: its index, the values of the keys that vary across the sweep, whether it finished,
and every scalar of its summary (nested keys joined with dots). A point without
``summary.json`` yet is listed as ``missing``, so the table also shows what is still running.

Outputs: markdown on stdout, and ``sweep_summary.md`` / ``sweep_summary.json`` in the sweep
directory.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from r1mega.config.errors import ConfigError

MANIFEST = "sweep.json"
SUMMARY = "summary.json"
IGNORED = ("hydra.", "trainer.checkpoint_dir")
"""Override keys that differ per point by construction, not by choice (never shown)."""


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        elif isinstance(value, (int, float, str, bool)) or value is None:
            out[name] = value
    return out


def _overrides(point_dir: Path, manifest: dict[str, list[str]]) -> list[str]:
    hydra = point_dir / ".hydra" / "overrides.yaml"
    if hydra.is_file():
        return [str(o) for o in (yaml.safe_load(hydra.read_text()) or [])]
    return manifest.get(point_dir.name, [])


def _point_dirs(sweep_dir: Path, manifest: dict[str, list[str]]) -> list[Path]:
    dirs = {p.parent for p in sweep_dir.glob(f"*/{SUMMARY}")}
    dirs |= {p.parent.parent for p in sweep_dir.glob("*/.hydra/overrides.yaml")}
    dirs |= {sweep_dir / name for name in manifest}
    return sorted(dirs, key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name))


def collect(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """One record per point: point, overrides, status, metrics."""
    root = Path(sweep_dir)
    if not root.is_dir():
        raise ConfigError(f"sweep directory {root} does not exist")
    manifest: dict[str, list[str]] = {}
    if (root / MANIFEST).is_file():
        manifest = {str(p["dir"]): list(p["overrides"]) for p in json.loads((root / MANIFEST).read_text())["points"]}
    dirs = _point_dirs(root, manifest) or ([root] if (root / SUMMARY).is_file() else [])
    if not dirs:
        raise ConfigError(f"{root} holds no sweep points (no */{SUMMARY}, */.hydra, or {MANIFEST})")
    rows = []
    for d in dirs:
        summary = d / SUMMARY
        metrics = _flatten(json.loads(summary.read_text())) if summary.is_file() else {}
        rows.append({"point": d.name, "overrides": _overrides(d, manifest),
                     "status": "done" if summary.is_file() else "missing", "metrics": metrics})
    return rows


def swept(rows: list[dict[str, Any]]) -> list[str]:
    """Override keys whose value differs between points (in first-seen order)."""
    values: dict[str, set] = {}
    for row in rows:
        for o in row["overrides"]:
            key, _, value = o.partition("=")
            if not key.lstrip("+").startswith(IGNORED):
                values.setdefault(key, set()).add(value)
    return [k for k, v in values.items() if len(v) > 1 or any(k not in _keys(r) for r in rows)]


def _keys(row: dict[str, Any]) -> set[str]:
    return {o.partition("=")[0] for o in row["overrides"]}


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def markdown(rows: list[dict[str, Any]]) -> str:
    keys = swept(rows)
    metrics = sorted({m for r in rows for m in r["metrics"]})
    header = ["point", *keys, "status", *metrics]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        given = dict(o.partition("=")[::2] for o in r["overrides"])
        cells = [r["point"], *(given.get(k, "") for k in keys), r["status"], *(_cell(r["metrics"].get(m)) for m in metrics)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write(sweep_dir: str | Path, rows: list[dict[str, Any]]) -> tuple[Path, Path]:
    """Write ``sweep_summary.md`` and ``sweep_summary.json``; return their paths."""
    root = Path(sweep_dir)
    md, js = root / "sweep_summary.md", root / "sweep_summary.json"
    md.write_text(markdown(rows))
    js.write_text(json.dumps({"swept": swept(rows), "points": rows}, indent=2) + "\n")
    return md, js


def manifest(name: str, jobs) -> dict[str, Any]:
    """The ``sweep.json`` record written at submission."""
    return {"name": name, "points": [
        {"dir": Path(j.run_dir).name, "job": j.name, "overrides": list(j.point.train_overrides),
         "swept": dict(j.point.swept)} for j in jobs]}
