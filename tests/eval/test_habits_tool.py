"""tools/analysis/habits.py: habit split of evaluation samples."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from r1mega.data.synthetic import SyntheticTaskConfig, format_response, generate, solve_aligned, solve_short

_PATH = Path(__file__).resolve().parents[2] / "tools" / "analysis" / "habits.py"
_spec = importlib.util.spec_from_file_location("habits_tool", _PATH)
habits = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(habits)


def test_habit_of_each_bundled_style():
    nums, ops = [4, 3, 0, 0, 2], ["-", "-", "+", "+"]
    assert habits.habit(format_response(*solve_aligned(nums, ops))) == "steps"
    assert habits.habit(format_response(*solve_short(nums, ops))) == "one_line"
    cfg = SyntheticTaskConfig(num_train=50, num_test=1, max_digits=1, min_terms=3, max_terms=3, style="chain")
    assert {habits.habit(r["response"]) for r in generate(cfg)["train"]} == {"steps"}


def test_split_counts_sampled_responses_only(tmp_path, capsys):
    steps, short = "<think>\n1 + 1\n= 2\n</think> \\boxed{2}", "<think>\n1 + 1 = 2\n</think> \\boxed{2}"
    rows = [{"completion": steps, "score": 1.0}, {"completion": steps, "score": 0.0},
            {"completion": short, "score": 0.0}, {"completion": short, "score": 1.0, "greedy": True}]
    r = habits.split(rows)
    assert r == {"n": 3, "pass@1": pytest.approx(1 / 3), "steps_share": pytest.approx(2 / 3),
                 "steps_accuracy": 0.5, "one_line_share": pytest.approx(1 / 3), "one_line_accuracy": 0.0}
    f = tmp_path / "s.jsonl"
    f.write_text("".join(json.dumps(x) + "\n" for x in rows))
    assert habits.main([str(f)]) == 0
    assert "| 3 | 0.333 | 0.667 | 0.500 | 0.333 | 0.000 |" in capsys.readouterr().out
    f.write_text("{}\nnot json\n")
    assert habits.main([str(f)]) == 2
    assert f"samples file: {f}:2: invalid JSON" in capsys.readouterr().err
