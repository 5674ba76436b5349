"""Benchmark loaders (AIME-style, MATH-500-style JSONL) and the questions stage=eval scores."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from r1mega.config.schema import R1Config
from r1mega.config.errors import ConfigError
from r1mega.eval.benchmarks import EvalConfig, eval_records, load_benchmark
from r1mega.eval.runner import evaluate
from r1mega.rewards import RewardManager
from tests.pipeline.test_eval_metrics import ScriptedEngine, _boxed, _Tok

MATH500 = [  # the fields of HuggingFaceH4/MATH-500
    {"problem": "Convert the point $(0,3)$ in rectangular coordinates to polar coordinates.",
     "solution": "...", "answer": "\\left( 3, \\frac{\\pi}{2} \\right)", "subject": "Precalculus", "level": 2,
     "unique_id": "test/precalculus/807.json"},
    {"problem": "What is $\\frac{7}{2} - \\frac{1}{3}$?", "solution": "...", "answer": "\\frac{19}{6}",
     "subject": "Prealgebra", "level": 1, "unique_id": "test/prealgebra/1.json"},
]
AIME = [  # the two spellings of AIME exports: lower-case with a string answer, capitalised with an int
    {"id": 60, "problem": "Find the remainder when 2^10 is divided by 1000.", "answer": "24", "url": "x"},
    {"ID": "2024-I-2", "Problem": "Compute 6 * 7.", "Solution": "...", "Answer": 42},
]


def _write(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_math500_and_aime_rows_become_canonical_records(tmp_path):
    m = load_benchmark(_write(tmp_path / "math500.jsonl", MATH500))
    assert m[1] == {"id": "test/prealgebra/1.json", "prompt": "What is $\\frac{7}{2} - \\frac{1}{3}$?",
                    "answer": "\\frac{19}{6}", "data_source": "math"}
    assert m[0]["answer"] == "\\left( 3, \\frac{\\pi}{2} \\right)"
    a = load_benchmark(_write(tmp_path / "aime.jsonl", [AIME[0], "", AIME[1]]), "aime")
    assert [(r["id"], r["prompt"], r["answer"]) for r in a] == [
        ("60", "Find the remainder when 2^10 is divided by 1000.", "24"), ("2024-I-2", "Compute 6 * 7.", "42")]
    assert load_benchmark(tmp_path / "math500.jsonl", "math500", data_source="mathx")[0]["data_source"] == "mathx"


@pytest.mark.parametrize("row,fmt,needle", [
    ({"question": "Q", "solution": "S"}, "auto", r"bad.jsonl:2: no answer \(one of \['answer', 'Answer'\]\)"),
    ({"Problem": "Q", "answer": "1"}, "math500", r"bad.jsonl:2: no question \(one of \['problem'\]\)"),
    ("{not json", "auto", r"bad.jsonl:2: invalid JSON"),
])
def test_bad_benchmark_rows_name_file_and_line(tmp_path, row, fmt, needle):
    path = _write(tmp_path / "bad.jsonl", [MATH500[0], row])
    with pytest.raises(ValueError, match=needle):
        load_benchmark(path, fmt)


def test_eval_records_use_files_or_the_synthetic_test_split(tmp_path):
    cfg = R1Config()
    cfg.data.synthetic.num_test = 5
    synthetic = eval_records(cfg)
    assert len(synthetic) == 5 and all(r["id"].startswith("synthetic-test-") and r["answer"] for r in synthetic)
    cfg.evaluation = EvalConfig(files=[str(_write(tmp_path / "m.jsonl", MATH500)),
                                       str(_write(tmp_path / "a.jsonl", AIME))], max_questions=3)
    assert [r["answer"] for r in eval_records(cfg)] == ["\\left( 3, \\frac{\\pi}{2} \\right)", "\\frac{19}{6}", "24"]
    for bad, needle in [(EvalConfig(files=[str(tmp_path / "nope.jsonl")]), "evaluation.files: .*nope.jsonl does not exist"),
                        (EvalConfig(format="gsm8k"), "evaluation.format='gsm8k'"),
                        (EvalConfig(max_questions=-1), "evaluation.max_questions"),
                        (EvalConfig(k=0), "evaluation.k must be >= 1"),
                        (EvalConfig(top_p=0.0), "evaluation.top_p=0.0")]:
        cfg.evaluation, cfg.stage.name = bad, "eval"
        with pytest.raises(ConfigError, match=needle):
            cfg.validate(1)  # stage=eval checks its files and sampling settings before any model is built


def test_math500_latex_answers_score_by_equivalence(tmp_path):
    """LaTeX references are verified by value: 19/6 and 3.1666... would differ, \\dfrac{19}{6} does not."""
    records = load_benchmark(_write(tmp_path / "m.jsonl", MATH500))
    sampled = [_boxed("(3, \\frac{\\pi}{2})"), _boxed("(3, \\pi)"),      # q1: 1 of 2, a 1-1 tie -> first wins
               _boxed("\\dfrac{19}{6}"), _boxed("19/6")]                # q2: 2 of 2
    greedy = [_boxed("(3, \\pi/2)"), _boxed("3")]
    with RewardManager({"num_workers": 0}) as rm:
        out = evaluate(ScriptedEngine(sampled, greedy), _Tok(), records, "plain", rm, 2, 0.6, 0.95, 16)
    assert out["pass@1"] == pytest.approx((1 / 2 + 2 / 2) / 2)
    assert out["cons@2"] == pytest.approx(1.0) and out["pass@2"] == pytest.approx(1.0)
    assert out["greedy"] == pytest.approx(0.5)
