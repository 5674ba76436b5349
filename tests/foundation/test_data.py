"""Synthetic task, tokenizer, loaders and SFT batching."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from r1mega.data.config import DataConfig
from r1mega.data.loaders import load_split
from r1mega.data.sampler import EpochSampler, rank_slice
from r1mega.data.sft import collate, collate_packed, pack, tokenize_sft
from r1mega.data.synthetic import SyntheticTaskConfig, generate, solve, solve_aligned, solve_chain
from r1mega.data.tokenizer import load_tokenizer


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer("bundled")


def test_synthetic_is_deterministic_and_splits_are_disjoint():
    cfg = SyntheticTaskConfig(num_train=500, num_test=50, max_terms=3)
    a, b = generate(cfg), generate(cfg)
    assert a == b
    assert len(a["train"]) == 500 and len(a["test"]) == 50
    assert not {r["prompt"] for r in a["train"]} & {r["prompt"] for r in a["test"]}
    assert generate(SyntheticTaskConfig(num_train=500, num_test=50, max_terms=3, seed=1)) != a


def test_synthetic_answers_are_correct():
    for rec in generate(SyntheticTaskConfig(num_train=300, num_test=10, max_terms=3, max_digits=3))["train"]:
        expr = rec["prompt"].removeprefix("Compute ").rstrip(".")
        assert int(rec["answer"]) == eval(expr)  # left-to-right + and - is Python's order too
        assert rec["response"].endswith(f"\\boxed{{{rec['answer']}}}.")
        assert rec["response"].startswith("<think>\n") and "\n</think>\n" in rec["response"]


def test_column_reasoning_text():
    text, value = solve([47, 38], ["+"])
    assert value == 85
    assert text == "47 + 38: 7 + 8 = 15, write 5 carry 1. 4 + 3 + 1 = 8. So 47 + 38 = 85."
    text, value = solve([52, 17], ["-"])
    assert value == 35 and "2 - 7 borrow, 12 - 7 = 5. 5 - 1 - 1 = 3." in text


def test_chain_reasoning_text():
    text, value = solve_chain([9, 1, 3], ["+", "-"])
    assert (text, value) == ("9 + 1 - 3\n= 10 - 3\n= 7", 7)
    rec = generate(SyntheticTaskConfig(num_train=1, num_test=1, max_digits=1, style="chain"))["train"][0]
    assert rec["response"].startswith("<think>\n" + rec["prompt"].removeprefix("Compute ").rstrip(".") + "\n= ")


def test_short_fraction_writes_short_cot_in_train_only():
    cfg = SyntheticTaskConfig(num_train=1000, num_test=100, max_digits=1, min_terms=3, max_terms=3,
                              style="chain", short_fraction=0.3)
    splits = generate(cfg)
    short = [r for r in splits["train"] if "\n=" not in r["response"]]
    # chosen per problem by hash, so the share is binomial: 1000 draws at p=0.3 have sd 14.5
    assert 300 - 60 < len(short) < 300 + 60
    for r in short:
        expr = r["prompt"].removeprefix("Compute ").rstrip(".")
        assert r["response"] == f"<think>\n{expr} = {r['answer']}\n</think>\nThe answer is \\boxed{{{r['answer']}}}."
    assert all("\n=" in r["response"] for r in splits["test"])
    # the same problems, only the responses differ; a problem's form does not depend on the run
    long_only = generate(dataclasses.replace(cfg, short_fraction=0.0))
    assert [r["prompt"] for r in long_only["train"]] == [r["prompt"] for r in splits["train"]]
    assert generate(cfg) == splits


def test_aligned_lines_keep_one_token_length(tok):
    text, value = solve_aligned([4, 3, 0, 0, 2], ["-", "-", "+", "+"])
    assert value == 3
    assert text.split("\n") == ["4 - 3 - 0 + 0 + 2", "   1 - 0 + 0 + 2", "      1 + 0 + 2", "         1 + 2",
                                 "            3"]
    # the point of the style: each running value sits, in tokens, under the operand it absorbed
    assert {len(tok.tokenize(line)) for line in text.split("\n")} == {13}


def test_max_value_keeps_every_running_value_in_range():
    cfg = SyntheticTaskConfig(num_train=400, num_test=20, max_digits=1, min_terms=5, max_terms=5,
                              max_value=4, style="chain")
    splits = generate(cfg)
    for rec in splits["train"] + splits["test"]:
        terms = rec["prompt"].removeprefix("Compute ").rstrip(".").split()
        value, seen = int(terms[0]), [int(terms[0])]
        for op, n in zip(terms[1::2], terms[2::2]):
            value = value + int(n) if op == "+" else value - int(n)
            seen.append(value)
        assert all(0 <= v <= 4 for v in seen), rec["prompt"]
        assert rec["answer"] == str(value)
    # without the cap the same draw reaches values above 4
    free = generate(dataclasses.replace(cfg, max_value=None))["train"]
    assert max(int(r["answer"]) for r in free) > 4


@pytest.mark.parametrize("field,value", [("style", "words"), ("short_fraction", 1.5), ("max_value", 0)])
def test_synthetic_rejects_bad_options(field, value):
    with pytest.raises(ValueError, match=f"data.synthetic.{field}"):
        SyntheticTaskConfig(**{field: value}).validate()


def test_bundled_tokenizer_round_trips_and_splits_digits(tok):
    rec = generate(SyntheticTaskConfig(num_train=5, num_test=1))["train"][0]
    ids = tok(rec["response"], add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == rec["response"]
    assert tok.convert_tokens_to_ids(["<think>", "</think>"]) == ids[:1] + [tok.convert_tokens_to_ids("</think>")]
    digits = tok("123", add_special_tokens=False)["input_ids"]
    assert len(digits) == 3
    assert len(tok) <= 512


def test_tokenize_sft_masks_the_prompt(tok):
    rec = {"prompt": "Compute 2 + 3.", "response": "<think>\n2 + 3 = 5.\n</think>\nThe answer is \\boxed{5}."}
    s = tokenize_sft(rec, tok, "chat", 256)
    prompt_len = len(tok(tok.apply_chat_template([{"role": "user", "content": rec["prompt"]}], tokenize=False,
                                                 add_generation_prompt=True), add_special_tokens=False)["input_ids"])
    assert len(s.loss_mask) == len(s.ids) - 1
    assert s.loss_mask[: prompt_len - 1] == [0] * (prompt_len - 1)
    assert all(s.loss_mask[prompt_len - 1 :])
    assert s.ids[-1] == tok.eos_token_id
    trained = [s.ids[i + 1] for i, m in enumerate(s.loss_mask) if m]
    assert tok.decode(trained[:-1]) == rec["response"]


def test_loader_errors_name_file_and_line(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text(json.dumps({"prompt": "a", "response": "b"}) + "\n{not json\n" + json.dumps({"prompt": "c"}) + "\n")
    cfg = DataConfig(source="files", train_files=[str(f)])
    with pytest.raises(ValueError, match=rf"{f}:2: invalid JSON"):
        load_split(cfg, "train")
    cfg.on_error = "skip"
    records, report = load_split(cfg, "train")
    assert [r["prompt"] for r in records] == ["a"]
    assert report.skipped == 2
    assert any(f"{f}:3: missing or empty field 'response'" in r for r in report.reasons)


def test_loader_custom_fields_and_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"q": ["x?", "y?"], "a": ["X", "Y"], "src": ["math", None]}), path)
    cfg = DataConfig(source="files", train_files=[str(path)], prompt_key="q", response_key="a", data_source_key="src")
    records, _ = load_split(cfg, "train")
    assert records[0] == {"prompt": "x?", "response": "X", "data_source": "math"}
    assert records[1]["data_source"] == "synthetic"


def test_sampler_resumes_exactly():
    a = EpochSampler(100, 16, seed=3)
    seen = [a.next_batch() for _ in range(9)]  # crosses an epoch boundary (6 batches/epoch)
    b = EpochSampler(100, 16, seed=3)
    for _ in range(4):
        b.next_batch()
    c = EpochSampler(100, 16, seed=3)
    c.load_state_dict(b.state_dict())
    assert [c.next_batch() for _ in range(5)] == seen[4:]
    assert rank_slice(list(range(16)), 1, 4) == [4, 5, 6, 7]
    with pytest.raises(ValueError, match="saved for a dataset of 100 samples"):
        EpochSampler(50, 16, seed=3).load_state_dict(b.state_dict())


def test_length_grouped_batches_cover_the_epoch_and_pad_less():
    """group_by_length: every sample once per epoch in full batches of similar length (two
    length classes, as in the cold-start data), batch order shuffled, resume exact."""
    gen = torch.Generator().manual_seed(0)
    lengths = [31 if torch.rand(1, generator=gen) < 0.5 else 100 for _ in range(1000)]
    a = EpochSampler(1000, 16, seed=5, lengths=lengths)
    epoch = [a.next_batch() for _ in range(1000 // 16)]
    flat = [i for b in epoch for i in b]
    assert len(flat) == len(set(flat)) == 1000 // 16 * 16  # the short tail (8 samples) is dropped
    # A mega-batch of 800 sorted samples mixes the two lengths in at most one batch of 16.
    mixed = [b for b in epoch if len({lengths[i] for i in b}) > 1]
    assert len(mixed) <= 2
    padded = sum(16 * max(lengths[i] for i in b) for b in epoch)
    assert padded < 0.7 * len(epoch) * 16 * 100  # vs always padding to the longest sample
    shorts = [i for i, b in enumerate(epoch) if lengths[b[0]] == 31]
    assert shorts != list(range(len(shorts)))  # not all short batches first: the order is shuffled
    b = EpochSampler(1000, 16, seed=5, lengths=lengths)
    for _ in range(70):  # into the second epoch
        b.next_batch()
    c = EpochSampler(1000, 16, seed=5, lengths=lengths)
    c.load_state_dict(b.state_dict())
    assert c.next_batch() == b.next_batch()
    with pytest.raises(ValueError, match="data.pack and data.group_by_length"):
        DataConfig(pack=True, group_by_length=True).validate()


def test_packing_keeps_every_sample_and_marks_boundaries(tok):
    recs = generate(SyntheticTaskConfig(num_train=20, num_test=1))["train"]
    samples = [tokenize_sft(r, tok, "chat", 128) for r in recs]
    rows = pack(samples, 128)
    assert sum(len(r) for r in rows) == 20
    assert all(sum(len(s.ids) - 1 for s in r) <= 128 for r in rows)
    batch = collate_packed(rows[:2], tok.pad_token_id, 128)
    cu = batch["cu_seqlens"].tolist()
    assert cu[0] == 0 and cu[-1] == 256 and batch["tokens"].shape == (1, 256)
    assert batch["loss_mask"].sum() == sum(sum(s.loss_mask) for r in rows[:2] for s in r)
    starts = set(cu[:-1])
    assert all(batch["position_ids"][0, i] == 0 for i in starts)
    unpacked = collate([s for r in rows[:2] for s in r], tok.pad_token_id)
    assert unpacked["loss_mask"].sum() == batch["loss_mask"].sum()
    assert torch.equal(unpacked["labels"][unpacked["loss_mask"].bool()], batch["labels"][batch["loss_mask"].bool()])
