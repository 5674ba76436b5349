"""Session fixtures: one tiny random HF checkpoint per family and its imported Megatron copy.

Conversions run in the pytest process itself (``ParallelDims.build`` starts a one-rank gloo
group once); the multi-rank tests spawn fresh processes and only read these directories.
"""

from __future__ import annotations

import warnings

import pytest

from tests.convert.tiny_models import add_mtp_layers, make_hf


class Converted:
    """Lazily built ``(hf_dir, megatron_dir)`` per family, shared by every test module."""

    def __init__(self, root):
        self.root = root
        self._done: dict[str, tuple] = {}

    def __call__(self, family: str):
        """``family`` is one of tiny_models.FAMILIES, or ``deepseek_v3_mtp``: the DeepSeek
        checkpoint with one multi-token-prediction layer (``tiny_models.add_mtp_layers``)."""
        if family not in self._done:
            from r1mega.convert import import_hf

            warnings.filterwarnings("ignore")
            hf = make_hf(family.removesuffix("_mtp"), self.root / family / "hf")
            if family.endswith("_mtp"):
                add_mtp_layers(hf)
            meg = self.root / family / "meg"
            import_hf(hf, meg)
            self._done[family] = (hf, meg)
        return self._done[family]


@pytest.fixture(scope="session")
def converted(tmp_path_factory):
    return Converted(tmp_path_factory.mktemp("converted"))
