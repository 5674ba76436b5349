"""``take_view``: the piece of a materialised parameter that one write item of the
streaming dist-checkpoint writer asks for (``r1mega.convert.stream_save``)."""

from __future__ import annotations

import io

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
