"""r1mega-reward: JSONL in, JSONL out, per-line errors, atomic output, summary on stderr."""

from __future__ import annotations

import json
import os

import pytest

from r1mega.cli.reward import main

from tests.rewards.reward_helpers import python_block, think

LINES = [
    json.dumps({"completion": think("The answer is \\boxed{405}."), "data_source": "synthetic", "answer": "405"}),
    json.dumps({"completion": think("\\boxed{\\frac{1}{2}}"), "data_source": "math", "answer": "0.5", "id": 7}),
    json.dumps({"completion": python_block("print(int(input()) + 1)"), "data_source": "code",
                "tests": {"inputs": ["1"], "outputs": ["2"]}}),
    "{not json",
    "",
    json.dumps({"completion": "x", "data_source": "math"}),
    json.dumps({"completion": "x", "data_source": "poetry", "answer": "1"}),
    json.dumps([1, 2]),
]


@pytest.fixture
def input_file(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    return path


def _read(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_scores_good_lines_and_reports_bad_ones(input_file, tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    assert main([str(input_file), "--output", str(out), "--workers", "1"]) == 0
    rows = _read(out)
    assert len(rows) == 7  # the blank line is skipped
    assert [r["reward"] for r in rows[:3]] == [2.0, 2.0, 2.0]
    assert rows[1]["id"] == 7 and rows[1]["rewards"] == {"math_accuracy": 1.0, "format": 1.0}
    assert rows[3] == {"line": 4, "rewards": {}, "reward": None,
                       "error": "line 4: invalid JSON (Expecting property name enclosed in double quotes at column 2)"}
    assert rows[4]["error"] == "line 6: missing field 'answer'" and rows[4]["reward"] is None
    assert rows[5]["error"].startswith("line 7: unknown data_source 'poetry'")
    assert rows[6]["error"] == "line 8: expected a JSON object, got list"
    summary = capsys.readouterr().err.strip()
    assert summary == f"r1mega-reward: 7 lines, 3 scored, mean reward 2.0000, 4 with errors -> {out}"
    assert [p for p in os.listdir(tmp_path) if p.startswith(".r1mega-reward-")] == []


def test_reward_selection_and_timeout(input_file, tmp_path):
    out = tmp_path / "out.jsonl"
    assert main([str(input_file), "-o", str(out), "--reward", "format", "--reward", "repetition",
                 "--workers", "0", "--timeout", "2"]) == 0
    rows = _read(out)
    assert rows[0]["rewards"] == {"format": 1.0, "repetition": 0.0}
    assert "error" not in rows[4]  # no maths component selected, so 'answer' is not needed


def test_config_file(input_file, tmp_path):
    config = tmp_path / "rewards.json"
    config.write_text(json.dumps({"num_workers": 0, "sources": {
        "synthetic": {"components": [{"name": "math_accuracy", "weight": 3.0}]}}}))
    out = tmp_path / "out.jsonl"
    assert main([str(input_file), "-o", str(out), "--config", str(config)]) == 0
    rows = _read(out)
    assert rows[0]["reward"] == 3.0
    assert rows[1]["error"].startswith("line 2: unknown data_source 'math' (configured: synthetic)")


def test_usage_errors(input_file, tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    with pytest.raises(SystemExit) as info:
        main([str(input_file), "-o", str(out), "--reward", "nope"])
    assert info.value.code == 2
    assert "unknown reward component 'nope'" in capsys.readouterr().err
    assert main([str(tmp_path / "missing.jsonl"), "-o", str(out)]) == 1
    assert not out.exists()


def test_existing_output_is_replaced_whole(input_file, tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text("old content that must disappear\n" * 100)
    assert main([str(input_file), "-o", str(out), "--workers", "0"]) == 0
    assert "old content" not in out.read_text()


def test_unreadable_config_and_unwritable_output(input_file, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("sources: [unclosed")
    with pytest.raises(SystemExit) as info:
        main([str(input_file), "-o", str(tmp_path / "out.jsonl"), "--config", str(bad)])
    assert info.value.code == 2 and "cannot parse" in capsys.readouterr().err
    assert main([str(input_file), "-o", str(tmp_path / "no" / "such" / "dir.jsonl"), "--workers", "0"]) == 1
    assert "cannot write next to" in capsys.readouterr().err
