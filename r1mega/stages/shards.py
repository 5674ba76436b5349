"""Resumable, streaming JSONL output in chunks: per-rank shard files plus progress manifests.

A dataset-generation stage splits its prompts into numbered *chunks*. Each writing rank owns
``shards/rank_RRRRR.jsonl`` and ``shards/rank_RRRRR.progress.json``; finishing a chunk

1. appends the chunk's records to the shard and fsyncs it, then
2. atomically rewrites the progress manifest with the chunk's byte range and counts.

The manifest is the truth: on start each rank truncates its shard back to the end of the last
chunk its manifest lists, so a crash between 1 and 2 leaves no half chunk behind, and the
chunk is simply done again. Which chunks are done is the union over *all* manifests in the
directory, so a rerun with a different number of ranks still skips them. ``shards/plan.json``
pins what the chunk numbers mean (prompt count, chunk size, sampler, checkpoint); a rerun
with a different plan is refused instead of mixing two datasets.

:func:`merge` concatenates the chunks in chunk order into one file, atomically.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

from r1mega.config.errors import ConfigError
from r1mega.training.ckpt_layout import atomic_write_text

PLAN = "plan.json"


def _progress_path(directory: Path, rank: int) -> Path:
    return directory / f"rank_{rank:05d}.progress.json"


def _shard_path(directory: Path, rank: int) -> Path:
    return directory / f"rank_{rank:05d}.jsonl"


def check_plan(directory: Path, plan: dict) -> None:
    """Record ``plan`` on first use; ConfigError when an existing one differs."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / PLAN
    if path.exists():
        old = json.loads(path.read_text())
        diff = sorted(k for k in set(old) | set(plan) if old.get(k) != plan.get(k))
        if diff:
            raise ConfigError(
                f"{directory} holds chunks of a different run ({', '.join(f'{k}: {old.get(k)!r} -> {plan.get(k)!r}' for k in diff)}); "
                "use a new run directory (hydra.run.dir=...) or delete it"
            )
        return
    atomic_write_text(path, json.dumps(plan, indent=1, sort_keys=True) + "\n")


def read_progress(directory: Path) -> dict[int, dict]:
    """chunk id -> {rank, start, end, counts} over every rank's manifest."""
    done: dict[int, dict] = {}
    for path in sorted(directory.glob("rank_*.progress.json")):
        rank = int(path.name.split("_")[1].split(".")[0])
        for cid, entry in json.loads(path.read_text())["chunks"].items():
            done[int(cid)] = {**entry, "rank": rank}
    return done


class ShardWriter:
    """Appends whole chunks to this rank's shard; see the module docstring."""

    def __init__(self, directory: str | Path, rank: int):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.rank = rank
        self.shard = _shard_path(self.directory, rank)
        self.progress_file = _progress_path(self.directory, rank)
        self.chunks: dict = {}
        if self.progress_file.exists():
            self.chunks = json.loads(self.progress_file.read_text())["chunks"]
        end = max((c["end"] for c in self.chunks.values()), default=0)
        with open(self.shard, "ab") as fh:  # creates it; then drop any tail past the last chunk
            fh.truncate(end)

    def write_chunk(self, chunk_id: int, records: list[dict], counts: dict) -> None:
        with open(self.shard, "ab") as fh:
            start = fh.tell()
            for r in records:
                fh.write((json.dumps(r, ensure_ascii=False) + "\n").encode())
            fh.flush()
            os.fsync(fh.fileno())
            end = fh.tell()
        self.chunks[str(chunk_id)] = {"start": start, "end": end, "records": len(records), "counts": dict(counts)}
        atomic_write_text(self.progress_file, json.dumps({"rank": self.rank, "chunks": self.chunks}) + "\n")


def merge(directory: str | Path, num_chunks: int, output: str | Path) -> Counter:
    """Write every chunk's records, in chunk order, to ``output`` atomically; summed counts."""
    directory, output = Path(directory), Path(output)
    done = read_progress(directory)
    missing = [c for c in range(num_chunks) if c not in done]
    if missing:
        raise RuntimeError(f"cannot merge {directory}: chunks {missing[:10]} are not done")
    totals: Counter = Counter()
    tmp = output.with_name(output.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as out:
        for cid in range(num_chunks):
            entry = done[cid]
            with open(_shard_path(directory, entry["rank"]), "rb") as fh:
                fh.seek(entry["start"])
                out.write(fh.read(entry["end"] - entry["start"]))
            totals.update(entry["counts"])
            totals["records"] += entry["records"]
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, output)
    return totals
