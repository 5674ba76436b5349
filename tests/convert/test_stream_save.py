"""Import's reads and writes of one tensor: ``take_view`` (the piece of a materialised
parameter one write item of the streaming dist-checkpoint writer asks for,
``r1mega.convert.stream_save``) and the direct row reads of ``load_hf.hf_local_tensor``."""

from __future__ import annotations

import io

import pytest
import torch

from r1mega.convert.stream_save import take_view


def _saved_bytes(t: torch.Tensor) -> int:
    buf = io.BytesIO()
    torch.save(t, buf)
    return len(buf.getvalue())


def test_contiguous_piece_shares_memory_and_saves_only_its_bytes():
    """The up half of a ``linear_fc1`` (Megatron's swiglu factory chunks dim 0): same values,
    no copy (its storage lies inside the parameter's), and ``torch.save`` writes just the
    half, as for a copy of it."""
    real = torch.randn(8, 5)
    meta = torch.empty(8, 5, device="meta")
    up = torch.chunk(meta, 2, dim=0)[1]
    got = take_view(real, up)
    assert torch.equal(got, real[4:])
    start = real.untyped_storage().data_ptr()
    assert start < got.untyped_storage().data_ptr() < start + real.untyped_storage().nbytes()
    assert got.untyped_storage().nbytes() == got.numel() * got.element_size()
    assert _saved_bytes(got) == _saved_bytes(real[4:].clone()) < _saved_bytes(real)


def test_whole_and_strided_pieces():
    real = torch.randn(6, 4)
    assert take_view(real, torch.empty(6, 4, device="meta")) is real
    cols = torch.empty(6, 4, device="meta")[:, 1:3]  # not contiguous: copied
    got = take_view(real, cols)
    assert torch.equal(got, real[:, 1:3]) and got.is_contiguous()
    assert got.untyped_storage().data_ptr() != real.untyped_storage().data_ptr()


@pytest.mark.parametrize("family", ["qwen3_moe", "deepseek_v3", "qwen2"])
@pytest.mark.parametrize("tp", [1, 2])
def test_direct_row_reads_equal_the_general_path(converted, family, tp):
    """Import reads copies and gate/up concatenations as row ranges straight into the result
    (``load_hf.row_ranges``); for every tensor of a tiny checkpoint and each TP rank, that gives
    the same bytes as reading whole, merging and cutting -- and it is taken for most tensors
    (every gate/up and column-split one), not for vocabulary or dim-1 splits."""
    from r1mega.convert.hf_io import HFReader
    from r1mega.convert.load_hf import hf_local_tensor, row_ranges
    from r1mega.convert.mappings import entries, model_config_from_hf
    from r1mega.convert.sharding import RankLayout, global_shape, shard

    hf, _ = converted(family)
    reader = HFReader(hf)
    cfg = model_config_from_hf(reader.config)
    direct = set()
    for e in entries(cfg):
        if e.export_copy or e.tied:
            continue
        full = e.merge.megatron_shape([reader.shape(n) for n in e.hf])
        if e.tp == "vocab":
            continue  # padded rows: always the general path
        for rank in range(tp):
            lay = RankLayout(tp_rank=rank, tp_size=tp, etp_rank=rank, etp_size=tp)
            shape = _local_shape(full, e.tp, tp)
            fast = hf_local_tensor(e, shape, torch.float32, lay, cfg, reader)
            ranges = row_ranges(e, shape, torch.float32, lay, reader)
            full_t = e.merge.to_megatron([reader.get(n, torch.float32) for n in e.hf])
            slow = shard(full_t, e.tp, rank, tp)
            assert fast.dtype == slow.dtype and torch.equal(fast, slow), (e.global_name, rank)
            assert global_shape(tuple(fast.shape), e.tp, tp) == tuple(full)
            if ranges is not None:
                direct.add(e.tp)
            assert (ranges is None) == (e.tp == "row" and tp > 1 or type(e.merge).__name__ not in ("Copy", "GateUp"))
    assert {"gate_up", "replicated"} <= direct
    if family == "deepseek_v3" and tp == 2:
        assert "column" in direct  # MLA's up projections: plain copies split by rows
    reader.close()


def _local_shape(full: tuple, kind: str, size: int) -> tuple:
    if kind == "replicated" or size == 1:
        return tuple(full)
    if kind == "row":
        return (full[0], full[1] // size)
    return (full[0] // size, *full[1:])
