"""``r1mega-convert``: sub-commands, the JSON line of ``verify``, exit status 2 on bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from r1mega.cli.convert import main
from tests.convert.tiny_models import read_all

REPO = Path(__file__).resolve().parents[2]


def fresh_env() -> dict:
    """This process's environment minus the rendezvous it set up for its own one-rank group."""
    drop = {"MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK"}
    return {k: v for k, v in os.environ.items() if k not in drop}


def test_import_export_in_process(converted, tmp_path, capsys):
    hf, _ = converted("llama")
    assert main(["import", "--hf-path", str(hf), "--megatron-path", str(tmp_path / "meg"),
                 "--tp", "2", "--pp", "2", "--name", "tiny-llama"]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line == {"command": "import", "checkpoint": str(tmp_path / "meg" / "iter_0000000")}
    meta = json.loads((tmp_path / "meg" / "iter_0000000" / "r1mega.json").read_text())
    assert meta["intended_layout"] == {"tp": 2, "pp": 2, "ep": 1, "etp": 1}
    assert meta["model"]["name"] == "tiny-llama" and meta["complete"] is True
    assert main(["export", "--megatron-path", str(tmp_path / "meg"), "--hf-path", str(tmp_path / "out")]) == 0
    out = read_all(tmp_path / "out")
    assert all(torch.equal(out[k], v) for k, v in read_all(hf).items())


def test_bad_input_exits_2_naming_the_field(converted, tmp_path, capsys):
    hf, _ = converted("qwen2")
    assert main(["import", "--hf-path", str(hf), "--megatron-path", str(tmp_path / "meg"), "--ep", "2"]) == 2
    err = capsys.readouterr().err
    assert "error: parallel.ep=2/etp=1 > 1 needs a MoE model" in err


def test_verify_console_command_prints_one_json_line(converted):
    """The real entry point, in a fresh interpreter (as ``r1mega-convert verify`` runs)."""
    hf, meg = converted("deepseek_v3")
    proc = subprocess.run(
        [sys.executable, "-m", "r1mega.cli.convert", "verify", "--hf-path", str(hf), "--megatron-path", str(meg),
         "--seq-len", "16"],
        cwd=REPO, capture_output=True, text=True, timeout=300, env=fresh_env(),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert result["max_abs_diff"] <= 1e-4 and result["top1_agreement"] == 1.0 and result["tokens"] == 32


def test_mtp_flag_reaches_the_importer(converted, tmp_path, capsys):
    """``--mtp require`` on a checkpoint declaring no MTP layer: exit 2 naming the flag;
    ``--mtp drop`` on one with an MTP layer: imported without it."""
    hf, _ = converted("deepseek_v3")
    assert main(["import", "--hf-path", str(hf), "--megatron-path", str(tmp_path / "a"), "--mtp", "require"]) == 2
    assert "error: --mtp require: " in capsys.readouterr().err
    hf_mtp, _ = converted("deepseek_v3_mtp")
    assert main(["import", "--hf-path", str(hf_mtp), "--megatron-path", str(tmp_path / "b"), "--mtp", "drop"]) == 0
    meta = json.loads((tmp_path / "b" / "iter_0000000" / "r1mega.json").read_text())
    assert meta["model"]["mtp_num_layers"] == 0
