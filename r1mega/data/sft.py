"""Turn SFT records into micro-batches: prompt tokens masked, optional packing.

A sample is ``prompt tokens + response tokens + EOS``; only response tokens and the EOS carry
loss (``loss_mask``). Inputs and labels are the usual one-token shift of the same ids.

Without packing, a micro-batch pads its samples to a common length (the longest sample rounded
up to ``ParallelDims.pad_multiple``, or ``seq_length`` under pipeline parallelism, whose send/recv buffers need a fixed
shape). With packing, samples are laid end to end in rows of ``seq_length``; each sample keeps
its own positions (restarting at 0) and attention never crosses a sample boundary
(``PackedSeqParams`` with cumulative lengths), so the loss of a packed batch equals the loss of
the same samples unpacked.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from r1mega.data.templates import render_prompt


@dataclass
class Sample:
    ids: list
    loss_mask: list  # 1 where the *next-token target* at this position is trained


def tokenize_sft(record: dict, tokenizer, template: str, seq_length: int) -> Sample | None:
    """Prompt/response (or messages) -> one Sample, truncated to ``seq_length + 1`` ids.
    Returns None when the prompt alone leaves no room for a response token."""
    if "messages" in record:
        msgs = record["messages"]
        if msgs[-1]["role"] != "assistant":
            raise ValueError("a messages record must end with an assistant message")
        prompt = tokenizer.apply_chat_template(msgs[:-1], tokenize=False, add_generation_prompt=True)
        response = msgs[-1]["content"]
    else:
        prompt = render_prompt(tokenizer, record["prompt"], template)
        response = record["response"]
    p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    r_ids = tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    ids = (p_ids + r_ids)[: seq_length + 1]
    if len(ids) <= len(p_ids):
        return None
    # Position i predicts ids[i + 1]; train it when ids[i + 1] belongs to the response.
    mask = [0] * (len(p_ids) - 1) + [1] * (len(ids) - len(p_ids))
    return Sample(ids=ids, loss_mask=mask)


def _round_up(n: int, multiple: int) -> int:
    return (n + multiple - 1) // multiple * multiple


def collate(samples: list[Sample], pad_id: int, fixed_length: int | None = None, multiple: int = 16) -> dict:
    """Pad ``samples`` into tensors ``tokens, labels, loss_mask, position_ids`` of shape [b, s]:
    ``s`` is ``fixed_length``, or the longest sample rounded up to ``multiple``."""
    length = fixed_length or _round_up(max(len(s.ids) - 1 for s in samples), multiple)
    b = len(samples)
    tokens = torch.full((b, length), pad_id, dtype=torch.long)
    labels = torch.full((b, length), pad_id, dtype=torch.long)
    loss_mask = torch.zeros((b, length), dtype=torch.float32)
    for i, s in enumerate(samples):
        n = len(s.ids) - 1
        tokens[i, :n] = torch.tensor(s.ids[:-1])
        labels[i, :n] = torch.tensor(s.ids[1:])
        loss_mask[i, :n] = torch.tensor(s.loss_mask[:n], dtype=torch.float32)
    position_ids = torch.arange(length).unsqueeze(0).expand(b, length).contiguous()
    return {"tokens": tokens, "labels": labels, "loss_mask": loss_mask, "position_ids": position_ids}


def pack(samples: list[Sample], seq_length: int) -> list[list[Sample]]:
    """Greedy first-fit packing of samples (each at most seq_length + 1 ids) into rows."""
    rows: list[list[Sample]] = []
    room: list[int] = []
    for s in samples:
        need = len(s.ids) - 1
        for i, r in enumerate(room):
            if r >= need:
                rows[i].append(s)
                room[i] -= need
                break
        else:
            rows.append([s])
            room.append(seq_length - need)
    return rows


def collate_packed(rows: list[list[Sample]], pad_id: int, seq_length: int) -> dict:
    """Packed rows -> one sequence of ``len(rows) * seq_length`` tokens (batch dim 1) plus
    ``cu_seqlens`` marking every sample (and the padding tail of each row) as a document."""
    tokens, labels, mask, pos, cu = [], [], [], [], [0]
    for row in rows:
        used = 0
        for s in row:
            n = len(s.ids) - 1
            tokens += s.ids[:-1]
            labels += s.ids[1:]
            mask += s.loss_mask[:n]
            pos += list(range(n))
            used += n
            cu.append(cu[-1] + n)
        pad = seq_length - used
        if pad:
            tokens += [pad_id] * pad
            labels += [pad_id] * pad
            mask += [0] * pad
            pos += list(range(pad))
            cu.append(cu[-1] + pad)
    return {
        "tokens": torch.tensor([tokens]),
        "labels": torch.tensor([labels]),
        "loss_mask": torch.tensor([mask], dtype=torch.float32),
        "position_ids": torch.tensor([pos]),
        "cu_seqlens": torch.tensor(cu, dtype=torch.int32),
    }


def packed_seq_params(batch: dict):
    """Megatron ``PackedSeqParams`` for a packed batch (None for an unpacked one)."""
    if "cu_seqlens" not in batch:
        return None
    from megatron.core.packed_seq_params import PackedSeqParams

    cu = batch["cu_seqlens"]
    longest = int((cu[1:] - cu[:-1]).max())
    return PackedSeqParams(
        qkv_format="thd",
        cu_seqlens_q=cu,
        cu_seqlens_kv=cu,
        max_seqlen_q=longest,
        max_seqlen_kv=longest,
    )
