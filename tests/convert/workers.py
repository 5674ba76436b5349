"""Rank-side halves of the multi-rank tests (module-level so spawn can pickle them).

:func:`check_layouts` loads one imported checkpoint at several layouts in the same process
group and, for each, reports (a) logits parity against reference logits computed by the HF
model in the parent, (b) whether the streamed HF tensors equal the original safetensors
bit-for-bit, and (c) the same for a model filled directly from HF at that layout. With
``mtp_logits`` in the reference it also reports the parity of the MTP depth's logits.
"""

from __future__ import annotations

from pathlib import Path

import torch


def _same_as_hf(streamed: dict, originals: dict) -> list[str]:
    """Names whose tensors differ (value, dtype, or presence) from the HF originals."""
    bad = sorted(set(streamed) ^ set(originals))
    for name in set(streamed) & set(originals):
        a, b = streamed[name], originals[name]
        if a.dtype != b.dtype or a.shape != b.shape or not torch.equal(a, b):
            bad.append(name)
    return bad


def _stream(chunk, cfg, bucket_bytes: int, fp8: bool = False):
    from r1mega.convert import iter_hf_buckets

    out, biggest = {}, 0
    for bucket in iter_hf_buckets(chunk, cfg, bucket_bytes=bucket_bytes, fp8=fp8):
        sizes = [t.numel() * t.element_size() for _, t in bucket]
        if len(bucket) > 1:
            biggest = max(biggest, sum(sizes))
        out.update({n: t.clone() for n, t in bucket})
    return out, biggest


def one_layout(hf_dir: str, ckpt_dir: str, ref: dict, tp: int, pp: int, ep: int, etp: int = 1) -> dict:
    from tests.convert.tiny_models import read_all

    from r1mega.convert import fill_from_hf, latest_iteration_dir, load_model_config
    from r1mega.convert.fp8 import SCALE_SUFFIX, quantize_blockwise
    from r1mega.convert.hf_io import HFReader
    from r1mega.convert.megatron_io import build_chunk, load_model, setup
    from r1mega.convert.verify import compare, megatron_logits

    cfg = load_model_config(ckpt_dir)
    dims = setup(cfg, tp, pp, ep, etp)
    chunk = build_chunk(cfg, dims, "fp32")
    load_model(chunk, latest_iteration_dir(ckpt_dir))
    logits = megatron_logits(chunk, ref["tokens"], cfg.vocab_size)
    result = {"layout": (tp, pp, ep, etp), "parity": None if logits is None else compare(ref["logits"], logits)}
    if "mtp_logits" in ref:  # the multi-token-prediction depth, against transformers' MtpModel
        from tests.convert.mtp_support import megatron_mtp_logits

        mtp = megatron_mtp_logits(chunk, ref["tokens"], cfg.vocab_size)
        result["mtp_parity"] = None if mtp is None else compare(ref["mtp_logits"], mtp)

    originals = read_all(hf_dir)
    bucket_bytes = 64 * 1024
    streamed, biggest = _stream(chunk, cfg, bucket_bytes)
    result["stream_mismatches"] = _same_as_hf(streamed, originals)
    result["bucket_ok"] = biggest <= bucket_bytes

    fresh = build_chunk(cfg, dims, "fp32")
    fill_from_hf([fresh], cfg, HFReader(hf_dir))
    result["fill_mismatches"] = _same_as_hf(_stream(fresh, cfg, bucket_bytes)[0], originals)

    if cfg.is_moe:
        fp8_stream, _ = _stream(chunk, cfg, bucket_bytes, fp8=True)
        bad = []
        for name, t in originals.items():
            if name + SCALE_SUFFIX in fp8_stream:
                q, s = quantize_blockwise(t)
                if not (torch.equal(fp8_stream[name].view(torch.uint8), q.view(torch.uint8))
                        and torch.equal(fp8_stream[name + SCALE_SUFFIX], s)):
                    bad.append(name)
            elif not torch.equal(fp8_stream[name], t):
                bad.append(name)
        result["fp8_mismatches"] = bad
        result["fp8_count"] = sum(n.endswith(SCALE_SUFFIX) for n in fp8_stream)
    return result


def check_layouts(hf_dir: str, ckpt_dir: str, ref_path: str, layouts: list) -> list[dict]:
    """:func:`one_layout` for each ``(tp, pp, ep)`` in turn, in one process group."""
    ref = torch.load(ref_path)
    return [one_layout(hf_dir, ckpt_dir, ref, *lay) for lay in layouts]


def import_at_layout(hf_dir: str, out_dir: str, tp: int, pp: int, ep: int) -> str:
    """``import_hf`` run on every rank at the given layout (the torchrun path)."""
    from r1mega.convert import import_hf

    return str(import_hf(hf_dir, Path(out_dir), tp=tp, pp=pp, ep=ep))


def export_at_layout(ckpt_dir: str, out_dir: str, tp: int, pp: int, ep: int) -> str:
    """``export_hf`` run on every rank at the given layout (the torchrun path: live-model
    stream, rank 0 writes)."""
    from r1mega.convert import export_hf

    return str(export_hf(ckpt_dir, Path(out_dir), tp=tp, pp=pp, ep=ep))
