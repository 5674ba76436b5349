"""The on-disk layout of an r1mega Megatron checkpoint, for every writer and reader.

::

    DIR/latest                    text: the iteration committed last (for people and tools)
    DIR/iter_0000100/model/       megatron.core.dist_checkpointing of the model (global keys)
    DIR/iter_0000100/r1mega.json  metadata (model config, ...); "complete": true
    DIR/.iter_0000100.tmp/        an iteration being written (ignored by every reader)

Training adds ``optim/`` and ``rng/`` to an iteration (:mod:`r1mega.training.checkpoint`);
the converter adds ``DIR/hf_assets/`` (:mod:`r1mega.convert.layout`).

An iteration is committed by writing everything into its staging directory, then
``r1mega.json`` last, then renaming the directory into place, then replacing ``latest``. A
process killed at any point leaves either nothing that looks complete or the previous
iteration. Readers trust only directories whose ``r1mega.json`` says ``"complete": true``.

Which iteration is the newest: the highest-numbered complete ``iter_*`` directory. ``latest``
is written after every commit, but readers never need it: a crash between the rename and the
``latest`` update, or a checkpoint written before ``latest`` existed, still reads correctly.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Optional

ITER_FMT = "iter_{:07d}"
META = "r1mega.json"
LATEST = "latest"
MODEL_DIR = "model"


def iteration_dir(ckpt_dir: str | Path, iteration: int) -> Path:
    return Path(ckpt_dir) / ITER_FMT.format(iteration)


def staging_dir(ckpt_dir: str | Path, iteration: int) -> Path:
    """Where an iteration is written before it is committed (ignored by every reader)."""
    return Path(ckpt_dir) / f".{ITER_FMT.format(iteration)}.tmp"


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the whole new one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_meta(iter_dir: str | Path) -> Optional[dict]:
    """``r1mega.json`` of a complete iteration directory, else None (missing, unreadable, incomplete)."""
    try:
        meta = json.loads((Path(iter_dir) / META).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return meta if meta.get("complete") is True else None


def complete_iterations(ckpt_dir: str | Path) -> list[Path]:
    """The complete ``iter_*`` directories under ``ckpt_dir``, oldest first."""
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        return []
    return [p for p in sorted(ckpt_dir.glob("iter_*")) if p.is_dir() and read_meta(p)]


def latest_checkpoint(ckpt_dir: str | Path) -> Optional[Path]:
    """The newest complete iteration under ``ckpt_dir`` (``ckpt_dir`` itself if it is one), else None."""
    if read_meta(ckpt_dir):
        return Path(ckpt_dir)
    found = complete_iterations(ckpt_dir)
    return found[-1] if found else None


def latest_iteration_dir(ckpt_dir: str | Path) -> Path:
    """:func:`latest_checkpoint`, or ValueError when ``ckpt_dir`` holds no complete iteration."""
    found = latest_checkpoint(ckpt_dir)
    if found is None:
        raise ValueError(f"{ckpt_dir} holds no complete r1mega checkpoint (no iter_*/{META} with complete=true)")
    return found


def commit_iteration(ckpt_dir: str | Path, iteration: int, meta: dict) -> Path:
    """Write ``r1mega.json`` (complete) into the staging dir, rename it into place, update
    ``latest``. Call on one rank, after every rank has finished writing."""
    ckpt_dir = Path(ckpt_dir)
    tmp, final = staging_dir(ckpt_dir, iteration), iteration_dir(ckpt_dir, iteration)
    atomic_write_text(tmp / META, json.dumps({**meta, "iteration": iteration, "complete": True}, indent=1,
                                             default=str))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    atomic_write_text(ckpt_dir / LATEST, f"{iteration}\n")
    return final
