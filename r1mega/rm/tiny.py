"""A tiny, randomly initialised preference reward model, saved like any Hugging Face model.

The tiny CPU pipeline has no trained reward model, so all-scenario RL builds this one on
first use: a 2-layer Qwen2-style ``AutoModelForSequenceClassification`` with one output and
the bundled tokenizer, written with ``save_pretrained`` so it loads through exactly the path a
real reward model takes. Its scores are a fixed random function of the text -- they exercise
the routing, batching and advantage mechanics, and mean nothing about helpfulness.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def build_random_reward_model(directory: str | Path, tokenizer, seed: int = 0, hidden_size: int = 32) -> Path:
    """Write a random num_labels=1 classifier and ``tokenizer`` to ``directory`` atomically."""
    import torch
    from transformers import AutoModelForSequenceClassification, Qwen2Config
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    directory = Path(directory)
    vocab = (len(tokenizer) + 63) // 64 * 64
    config = Qwen2Config(
        vocab_size=vocab, hidden_size=hidden_size, intermediate_size=2 * hidden_size, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=1024, num_labels=1,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_config(config)
    tmp = directory.with_name(directory.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    os.replace(tmp, directory)
    return directory
