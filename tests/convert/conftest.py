"""Session fixtures: one tiny random HF checkpoint per family and its imported Megatron copy.

Conversions run in the pytest process itself (``ParallelDims.build`` starts a one-rank gloo
group once); the multi-rank tests spawn fresh processes and only read these directories.
"""

from __future__ import annotations

import warnings

import pytest

from tests.convert.tiny_models import make_hf


class Converted:
    """Lazily built ``(hf_dir, megatron_dir)`` per family, shared by every test module."""

    def __init__(self, root):
        self.root = root
        self._done: dict[str, tuple] = {}

    def __call__(self, family: str):
        if family not in self._done:
            from r1mega.convert import import_hf

            warnings.filterwarnings("ignore")
            hf = make_hf(family, self.root / family / "hf")
            meg = self.root / family / "meg"
            import_hf(hf, meg)
            self._done[family] = (hf, meg)
        return self._done[family]


@pytest.fixture(scope="session")
def converted(tmp_path_factory):
    return Converted(tmp_path_factory.mktemp("converted"))
