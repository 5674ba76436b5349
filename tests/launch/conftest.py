"""Shared helpers of the launch tests: run r1mega-launch in-process, capture its output."""

import io
import sys
from pathlib import Path

import pytest

from r1mega.cli import launch as cli

HERE = Path(__file__).resolve().parent
CLUSTERS = HERE / "clusters"
GOLDEN = HERE / "golden"


@pytest.fixture
def launch(capsys, monkeypatch):
    """``launch(*argv) -> (exit status, stdout, stderr)``.

    NeMo-Run runs shell commands through ``invoke``, which reads stdin; pytest's captured
    stdin refuses that, so the commands get an empty one.
    """
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))

    def run(*argv: str):
        status = cli.main(list(argv))
        out = capsys.readouterr()
        return status, out.out, out.err

    return run
