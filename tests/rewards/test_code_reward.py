"""Code accuracy on ordinary programs: verdicts, reward modes, test formats, output comparison."""

from __future__ import annotations

import json
import shutil

import pytest

from r1mega.rewards import RewardManager
from r1mega.rewards.code.tests import normalize_output, outputs_match, parse_tests

from tests.rewards.reward_helpers import cpp_block, python_block, think

needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")
DOUBLE = {"inputs": ["2\n", "5\n", "-1\n"], "outputs": ["4\n", "10\n", "-2\n"]}


def _source(**options) -> dict:
    return {"components": [{"name": "code_accuracy", "options": {"timeout_s": 2.0, **options}}]}


@pytest.fixture(scope="module")
def manager():
    config = {"num_workers": 2, "sources": {"code": _source(), "code_fraction": _source(mode="fraction")}}
    with RewardManager(config) as rm:
        yield rm


def _score(rm, completion, tests=DOUBLE, source="code"):
    result = rm.score({"completion": completion, "data_source": source, "tests": tests})
    return result, result.details.get("code_accuracy", {})


def test_python_passes_all_tests(manager):
    result, details = _score(manager, python_block("print(int(input()) * 2)"))
    assert result.reward == 1.0
    assert details["verdicts"] == ["passed", "passed", "passed"]


def test_wrong_answer_stops_at_first_failure(manager):
    result, details = _score(manager, python_block("n = int(input())\nprint(n * 2 if n > 0 else 0)"))
    assert result.reward == 0.0
    assert details["verdicts"] == ["passed", "passed", "wrong_answer"]


def test_fraction_mode_runs_every_test(manager):
    result, details = _score(manager, python_block("n = int(input())\nprint(4 if n == 2 else 0)"), source="code_fraction")
    assert result.reward == pytest.approx(1 / 3)
    assert details["verdicts"] == ["passed", "wrong_answer", "wrong_answer"]


@pytest.mark.parametrize("code, verdict", [
    ("def f(:\n    pass", "compile_error"),
    ("raise SystemExit(3)", "runtime_error"),
    ("print(undefined_name)", "runtime_error"),
])
def test_failure_verdicts(manager, code, verdict):
    result, details = _score(manager, python_block(code))
    assert result.reward == 0.0 and details["verdicts"] == [verdict]


def test_assert_style_tests(manager):
    tests = {"test_code": "assert add(2, 3) == 5\nassert add(-1, 1) == 0"}
    good, _ = _score(manager, python_block("def add(a, b):\n    return a + b"), tests)
    bad, details = _score(manager, python_block("def add(a, b):\n    return a - b"), tests)
    assert (good.reward, bad.reward) == (1.0, 0.0)
    assert details["verdicts"] == ["runtime_error"]


def test_humaneval_style_entry_point(manager):
    tests = {"test_code": "def check(candidate):\n    assert candidate([3, 1, 2]) == [1, 2, 3]",
             "entry_point": "sort_list"}
    result, _ = _score(manager, python_block("def sort_list(xs):\n    return sorted(xs)"), tests)
    assert result.reward == 1.0


def test_tests_given_as_json_string(manager):
    result, _ = _score(manager, python_block("print(int(input()) * 2)"), json.dumps(DOUBLE))
    assert result.reward == 1.0


def test_last_block_wins_and_other_languages_are_ignored(manager):
    completion = think("```python\nprint('draft')\n```\n```python\nprint(int(input()) * 2)\n```\n```text\nx\n```")
    assert _score(manager, completion)[0].reward == 1.0


def test_no_code_block_or_unfinished_reasoning(manager):
    assert _score(manager, think("I would print the double."))[1]["status"] == "no_code"
    unfinished = "<think>\n```python\nprint(int(input()) * 2)\n```"
    assert _score(manager, unfinished)[0].reward == 0.0


@pytest.mark.parametrize("tests, message", [
    ({"inputs": ["1"], "outputs": []}, "tests.inputs has 1 cases but tests.outputs has 0"),
    ({"inputs": []}, "needs 'inputs' and 'outputs'"),
    ({"test_code": ""}, "tests.test_code must be a non-empty string"),
    ("not json", "not JSON"),
    ({"inputs": [1], "outputs": ["1"]}, "tests.inputs[0] must be a string"),
])
def test_invalid_tests_are_reported(manager, tests, message):
    result = manager.score({"completion": python_block("print(1)"), "data_source": "code", "tests": tests})
    assert result.reward == 0.0 and message in result.error


@needs_gxx
def test_cpp_program(manager):
    code = "#include <iostream>\nint main() { long n; std::cin >> n; std::cout << 2 * n << std::endl; }"
    result, details = _score(manager, cpp_block(code))
    assert result.reward == 1.0 and details["language"] == "cpp"


@needs_gxx
def test_cpp_compile_error(manager):
    result, details = _score(manager, cpp_block("int main() { return missing; }"))
    assert details["verdicts"] == ["compile_error"] * 3
    assert "missing" in details["compile_output"]


def test_output_comparison_is_whitespace_normalised():
    assert outputs_match("1  2\t3 \n\n\n", "1 2 3")
    assert outputs_match("a\nb\n", "a\r\nb")
    assert not outputs_match("1 2", "12")
    assert not outputs_match("a\nb", "b\na")
    assert normalize_output("  x  y \n\n") == ["x y"]


def test_list_of_lines_is_joined():
    spec = parse_tests({"inputs": [["1 2", "3"]], "outputs": [["6"]]})
    assert spec.cases == (("1 2\n3", "6"),)
