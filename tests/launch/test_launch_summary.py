"""r1mega-launch summarize: every point's summary.json in one table."""

import json

import pytest


def _point(root, name, overrides, summary=None, hydra=True):
    d = root / name
    (d / ".hydra").mkdir(parents=True)
    if hydra:
        (d / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if summary is not None:
        (d / "summary.json").write_text(json.dumps(summary))


def test_summarize_a_sweep(tmp_path, launch):
    common = ["stage=sft", "model=deepseek_v3_tiny"]
    _point(tmp_path, "0", common + ["optim.lr=1e-05", "trainer.checkpoint_dir=/c/0"],
           {"final_loss": 2.345678, "steps": 200, "eval": {"acc": 0.5}})
    _point(tmp_path, "1", common + ["optim.lr=3e-05", "trainer.checkpoint_dir=/c/1"],
           {"final_loss": 1.5, "steps": 200, "eval": {"acc": 0.625}, "curve": [1, 2]})
    _point(tmp_path, "10", common + ["optim.lr=1e-04"])  # still running: no summary.json yet
    status, out, err = launch("summarize", str(tmp_path))
    assert status == 0, err
    assert out == (
        "| point | optim.lr | status | eval.acc | final_loss | steps |\n"
        "|---|---|---|---|---|---|\n"
        "| 0 | 1e-05 | done | 0.5 | 2.346 | 200 |\n"
        "| 1 | 3e-05 | done | 0.625 | 1.5 | 200 |\n"
        "| 10 | 1e-04 | missing |  |  |  |\n"
    )
    assert (tmp_path / "sweep_summary.md").read_text() == out
    data = json.loads((tmp_path / "sweep_summary.json").read_text())
    assert data["swept"] == ["optim.lr"]
    assert [p["status"] for p in data["points"]] == ["done", "done", "missing"]
    assert data["points"][1]["metrics"] == {"final_loss": 1.5, "steps": 200, "eval.acc": 0.625}


def test_manifest_supplies_overrides_without_hydra_files(tmp_path, launch):
    manifest = {"name": "x", "points": [
        {"dir": "0", "job": "x-0", "overrides": ["a=1", "b=p"], "swept": {"b": "p"}},
        {"dir": "1", "job": "x-1", "overrides": ["a=1", "b=q"], "swept": {"b": "q"}},
    ]}
    (tmp_path / "sweep.json").write_text(json.dumps(manifest))
    (tmp_path / "0").mkdir()
    (tmp_path / "0" / "summary.json").write_text(json.dumps({"reward": 0.75}))
    status, out, _ = launch("summarize", str(tmp_path), "--no-write")
    assert status == 0
    assert out.splitlines()[2:] == ["| 0 | p | done | 0.75 |", "| 1 | q | missing |  |"]
    assert not (tmp_path / "sweep_summary.md").exists()


@pytest.mark.parametrize("make", [False, True])
def test_summarize_errors_are_one_line(tmp_path, launch, make):
    target = tmp_path / ("empty" if make else "absent")
    if make:
        target.mkdir()
    status, out, err = launch("summarize", str(target))
    assert status == 2 and out == ""
    assert err.count("\n") == 1 and ("does not exist" in err or "holds no sweep points" in err)
