"""Build the bundled tokenizer (r1mega/data/assets/) for the synthetic task.

A byte-level BPE with digits split one per token (so arithmetic is learnable column by
column), trained on the synthetic task's text, the R1-Zero template and the chat markers.
Byte-level means any text round-trips exactly, so rewards can read decoded output.
Run once: ``python tools/build_tokenizer.py``; the result is committed.
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from r1mega.data.synthetic import SyntheticTaskConfig, generate
from r1mega.data.templates import R1_ZERO_TEMPLATE

SPECIAL = ["<|pad|>", "<|bos|>", "<|eos|>", "<|system|>", "<|user|>", "<|assistant|>"]
TAGS = ["<think>", "</think>", "<answer>", "</answer>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ '<|' + m['role'] + '|>' + m['content'] }}{% if m['role'] == 'assistant' %}"
    "{{ '<|eos|>' }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)
OUT = Path(__file__).resolve().parents[1] / "r1mega" / "data" / "assets"


def corpus():
    splits = generate(SyntheticTaskConfig(num_train=5000, num_test=64, max_terms=3, max_digits=3))
    for rec in splits["train"]:
        yield rec["prompt"]
        yield rec["response"]
    for _ in range(50):
        yield R1_ZERO_TEMPLATE
    yield "The answer is <answer> 42 </answer>. Let me think step by step. Wait, check again."


def main() -> None:
    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=SPECIAL + TAGS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus(), trainer)
    OUT.mkdir(parents=True, exist_ok=True)
    tok.save(str(OUT / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<|bos|>",
        "eos_token": "<|eos|>",
        "pad_token": "<|pad|>",
        "additional_special_tokens": SPECIAL[3:] + TAGS,
        "chat_template": CHAT_TEMPLATE,
        "model_max_length": 4096,
        "clean_up_tokenization_spaces": False,
    }
    (OUT / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    print(f"wrote {OUT} with {tok.get_vocab_size()} tokens")


if __name__ == "__main__":
    main()
