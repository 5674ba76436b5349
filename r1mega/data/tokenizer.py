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


def check_vocab(tokenizer, vocab_size: int) -> None:
    """ValueError when the tokenizer has more tokens than the model's ``model.vocab_size``."""
    if len(tokenizer) > vocab_size:
        raise ValueError(f"the tokenizer has {len(tokenizer)} tokens but model.vocab_size={vocab_size}")
