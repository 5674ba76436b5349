"""The ``mix`` step: reasoning SFT data plus the user's non-reasoning data, at a ratio.

R1's SFT round trains on ~600k reasoning samples (from rejection sampling) and ~200k
non-reasoning ones (writing, factual QA, self-cognition, translation): a 25% share. Here the
reasoning records are every record of the step's ``inputs``; non-reasoning ones come from
``pipeline.extra_sft_files`` and make up ``pipeline.extra_sft_ratio`` of the result -- cycled
when there are too few, a deterministic sample when there are more. Records are copied as they
are (prompt/response or messages; the SFT stage reads both), reasoning first. The output,
``<step dir>/data.jsonl``, and ``manifest.json`` are written atomically. With the step's
``min_records`` a small result is repeated cyclically up to that size (more epochs of the
same samples; the manifest says so), so it still fills an SFT global batch.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from r1mega.data.jsonl import json_lines
from r1mega.training.ckpt_layout import atomic_write_text


def read_jsonl(path: str | Path, key: str) -> list[dict]:
    path = Path(path).expanduser()
    if not path.is_file():
        raise ValueError(f"{key}: {path} does not exist")
    out = []
    for n, rec in json_lines(path, key):
        if not isinstance(rec, dict) or not (("prompt" in rec and "response" in rec) or "messages" in rec):
            raise ValueError(f"{key}: {path}:{n}: an SFT record needs prompt and response (or messages)")
        out.append(rec)
    return out


def mix_sft(inputs: list, extra_files: list, ratio: float, out_dir: Path, seed: int = 0, min_records: int = 0) -> dict:
    """Write the mixed dataset; returns the manifest."""
    reasoning = [r for p in inputs for r in read_jsonl(p, "pipeline mix input")]
    if not reasoning:
        raise ValueError(f"pipeline mix: the inputs {list(map(str, inputs))} hold no records")
    extra = [r for p in extra_files for r in read_jsonl(p, "pipeline.extra_sft_files")] if ratio > 0 else []
    want = round(len(reasoning) * ratio / (1 - ratio)) if extra else 0
    rng = random.Random(seed)
    pool = list(extra)
    rng.shuffle(pool)
    chosen = [pool[i % len(pool)] for i in range(want)] if pool else []
    rows = reasoning + chosen
    unique = len(rows)
    rows = [rows[i % unique] for i in range(max(unique, min_records))]
    out_dir.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    atomic_write_text(out_dir / "data.jsonl", text)
    manifest = {"output": str(out_dir / "data.jsonl"), "reasoning": len(reasoning), "extra": len(chosen),
                "extra_available": len(extra), "extra_ratio": ratio, "unique_records": unique,
                "records": len(rows), "repeated_to_min_records": len(rows) > unique}
    atomic_write_text(out_dir / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    return manifest
