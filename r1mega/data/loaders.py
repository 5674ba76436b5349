"""Read records from the bundled task or from user JSONL / Parquet files.

A record is a plain dict. Field names are the user's (``data.prompt_key`` ...); this module
maps them onto r1mega's canonical keys ``prompt``, ``response``, ``messages``, ``answer``,
``data_source`` so nothing downstream needs to know the user's schema.

Malformed input is never silently dropped: with ``data.on_error=raise`` the first bad record
stops the run with ``file:line: what is wrong``; with ``skip`` it is counted, and the count is
reported in the run's metrics (``LoadReport``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from r1mega.data.config import DataConfig
from r1mega.data.synthetic import generate


@dataclass
class LoadReport:
    """What loading found: records kept and records skipped (with the first few reasons)."""

    kept: int = 0
    skipped: int = 0
    reasons: list = field(default_factory=list)


def _iter_file(path: Path):
    """Yield (line_number, record-or-error) from a JSONL or Parquet file."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        for i, rec in enumerate(pq.read_table(path).to_pylist(), start=1):
            yield i, rec
        return
    with path.open(encoding="utf-8") as fh:
        for i, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                yield i, json.loads(line)
            except json.JSONDecodeError as e:
                yield i, ValueError(f"invalid JSON ({e.msg} at column {e.colno})")


def _canonical(raw, cfg: DataConfig, need_response: bool):
    if isinstance(raw, Exception):
        raise raw
    if not isinstance(raw, dict):
        raise ValueError(f"expected a JSON object, got {type(raw).__name__}")
    rec = {"data_source": raw.get(cfg.data_source_key) or cfg.default_source}
    if cfg.messages_key:
        msgs = raw.get(cfg.messages_key)
        if not isinstance(msgs, list) or not msgs or not all(isinstance(m, dict) and "role" in m for m in msgs):
            raise ValueError(f"field {cfg.messages_key!r} must be a non-empty list of {{role, content}} messages")
        rec["messages"] = msgs
        rec["prompt"] = next((m.get("content", "") for m in msgs if m["role"] == "user"), "")
    else:
        prompt = raw.get(cfg.prompt_key)
        if not isinstance(prompt, str) or not prompt:
            raise ValueError(f"missing or empty field {cfg.prompt_key!r}")
        rec["prompt"] = prompt
        if need_response:
            resp = raw.get(cfg.response_key)
            if not isinstance(resp, str) or not resp:
                raise ValueError(f"missing or empty field {cfg.response_key!r}")
            rec["response"] = resp
        elif isinstance(raw.get(cfg.response_key), str):
            rec["response"] = raw[cfg.response_key]
    if cfg.answer_key in raw and raw[cfg.answer_key] is not None:
        rec["answer"] = str(raw[cfg.answer_key])
    for key in ("id", "tests"):
        if key in raw:
            rec[key] = raw[key]
    return rec


def load_files(paths: list, cfg: DataConfig, need_response: bool, report: LoadReport) -> list[dict]:
    records = []
    for p in paths:
        path = Path(p).expanduser()
        if not path.is_file():
            raise ValueError(f"data file {path} does not exist")
        for line, raw in _iter_file(path):
            try:
                records.append(_canonical(raw, cfg, need_response))
                report.kept += 1
            except (ValueError, TypeError) as e:
                where = f"{path}:{line}: {e}"
                if cfg.on_error == "raise":
                    raise ValueError(where + " (set data.on_error=skip to skip bad records)") from None
                report.skipped += 1
                if len(report.reasons) < 10:
                    report.reasons.append(where)
    if not records:
        raise ValueError(f"no usable records in {list(map(str, paths))}")
    return records


def load_split(cfg: DataConfig, split: str, need_response: bool = True) -> tuple[list[dict], LoadReport]:
    """Records of ``split`` ('train' or 'test') and a report of what was skipped."""
    report = LoadReport()
    if cfg.source == "synthetic":
        records = generate(cfg.synthetic)[split]
        report.kept = len(records)
        return records, report
    paths = cfg.train_files if split == "train" else cfg.test_files
    if not paths:
        raise ValueError(f"data.{split}_files is empty")
    return load_files(paths, cfg, need_response, report), report
