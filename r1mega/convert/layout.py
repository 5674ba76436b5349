"""What the converter adds to the checkpoint layout of :mod:`r1mega.training.ckpt_layout`.

::

    DIR/hf_assets/                tokenizer files and the source config.json (written by import)
    DIR/iter_0000000/r1mega.json  {"model": asdict(ModelConfig), "iteration": N, "complete": true, ...}

and how the recorded model config is read back.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Optional

from r1mega.config.errors import InputError
from r1mega.models.config import ModelConfig
from r1mega.training.ckpt_layout import META, latest_iteration_dir, read_meta

HF_ASSETS = "hf_assets"
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
    "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja", "generation_config.json",
)
"""Files copied from the HF directory into ``hf_assets`` on import and back on export."""


def model_config_from_dict(d: dict) -> ModelConfig:
    """A ModelConfig from its ``asdict`` form; unknown keys are an error naming them."""
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise InputError(f"{META} model config has unknown field(s) {unknown} (written by a newer r1mega?)")
    cfg = ModelConfig(**d)
    cfg.validate()
    return cfg


def load_model_config(ckpt_dir: str | Path) -> ModelConfig:
    """The ModelConfig recorded in the newest complete iteration of ``ckpt_dir``."""
    meta = read_meta(latest_iteration_dir(ckpt_dir))
    return model_config_from_dict(meta["model"])


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
