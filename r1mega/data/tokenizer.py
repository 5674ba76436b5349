"""Tokenizers: the bundled one for the synthetic task, or any local Hugging Face tokenizer."""

from __future__ import annotations

from pathlib import Path

BUNDLED = "bundled"


def bundled_path() -> Path:
    return Path(__file__).resolve().parent / "assets"


def load_tokenizer(name_or_path: str = BUNDLED):
    """A ``transformers`` fast tokenizer from ``bundled`` or a local directory (no hub access)."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if name_or_path == BUNDLED:
        path = bundled_path()
        return PreTrainedTokenizerFast.from_pretrained(str(path), local_files_only=True)
    path = Path(name_or_path).expanduser()
    if not path.is_dir():
        raise ValueError(f"data.tokenizer={name_or_path!r}: not a directory with tokenizer files")
    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def save_tokenizer(tokenizer, directory: str | Path) -> None:
    """Write tokenizer files next to a checkpoint so exports and vLLM find them."""
    tokenizer.save_pretrained(str(directory))
