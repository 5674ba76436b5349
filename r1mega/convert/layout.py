"""The on-disk layout of an r1mega Megatron checkpoint, shared with ``r1mega.training``.

::

    DIR/latest                    text: the newest complete iteration number
    DIR/iter_0000000/model/       megatron.core.dist_checkpointing of model.sharded_state_dict()
    DIR/iter_0000000/r1mega.json  {"model": asdict(ModelConfig), "iteration": N, "complete": true, ...}
    DIR/hf_assets/                tokenizer files and the source config.json (written by import)

An iteration is committed by writing everything into ``DIR/.iter_0000000.tmp``, then
``r1mega.json`` last, then renaming the directory into place, then replacing ``latest``. A
process killed at any point leaves either nothing that looks complete or the previous
iteration. Readers trust only directories whose ``r1mega.json`` says ``"complete": true``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Optional

from r1mega.models.config import ModelConfig

ITER_FMT = "iter_{:07d}"
META = "r1mega.json"
LATEST = "latest"
MODEL_DIR = "model"
HF_ASSETS = "hf_assets"
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
    "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja", "generation_config.json",
)
"""Files copied from the HF directory into ``hf_assets`` on import and back on export."""


def iteration_dir(ckpt_dir: str | Path, iteration: int) -> Path:
    return Path(ckpt_dir) / ITER_FMT.format(iteration)


def staging_dir(ckpt_dir: str | Path, iteration: int) -> Path:
    """Where an iteration is written before it is committed (ignored by every reader)."""
    return Path(ckpt_dir) / f".{ITER_FMT.format(iteration)}.tmp"


def read_meta(iter_dir: str | Path) -> Optional[dict]:
    """``r1mega.json`` of a complete iteration directory, else None."""
    try:
        meta = json.loads((Path(iter_dir) / META).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return meta if meta.get("complete") is True else None


def latest_iteration_dir(ckpt_dir: str | Path) -> Path:
    """The newest complete ``iter_*`` directory (``ckpt_dir`` itself if it is one).

    ``latest`` is consulted first; if it is missing or points at an incomplete directory, the
    newest complete ``iter_*`` wins. Raises ValueError when there is none.
    """
    ckpt_dir = Path(ckpt_dir)
    if read_meta(ckpt_dir):
        return ckpt_dir
    try:
        it = int((ckpt_dir / LATEST).read_text().strip())
        if read_meta(iteration_dir(ckpt_dir, it)):
            return iteration_dir(ckpt_dir, it)
    except (OSError, ValueError):
        pass
    for d in sorted(ckpt_dir.glob("iter_*"), reverse=True):
        if d.is_dir() and read_meta(d):
            return d
    raise ValueError(f"{ckpt_dir} holds no complete r1mega checkpoint (no iter_*/{META} with complete=true)")


def model_config_from_dict(d: dict) -> ModelConfig:
    """A ModelConfig from its ``asdict`` form; unknown keys are an error naming them."""
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"{META} model config has unknown field(s) {unknown} (written by a newer r1mega?)")
    cfg = ModelConfig(**d)
    cfg.validate()
    return cfg


def load_model_config(ckpt_dir: str | Path) -> ModelConfig:
    """The ModelConfig recorded in the newest complete iteration of ``ckpt_dir``."""
    meta = read_meta(latest_iteration_dir(ckpt_dir))
    return model_config_from_dict(meta["model"])


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


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def copy_hf_assets(src: str | Path, dst: str | Path) -> list[str]:
    """Copy tokenizer files (and config.json as ``source_config.json``) that exist in ``src``."""
    src, dst = Path(src), Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    copied = []
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)
            copied.append(name)
    if (src / "config.json").is_file():
        shutil.copy2(src / "config.json", dst / "source_config.json")
    return copied


def find_hf_assets(ckpt_dir: str | Path, iter_dir: Path) -> Optional[Path]:
    """The assets directory for ``iter_dir``: its own, else the checkpoint's, else None."""
    for cand in (iter_dir / HF_ASSETS, Path(ckpt_dir) / HF_ASSETS, iter_dir.parent / HF_ASSETS):
        if cand.is_dir():
            return cand
    return None
