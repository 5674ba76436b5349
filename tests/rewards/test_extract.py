"""Finding the reasoning, the final maths answer and the final program in a completion."""

from __future__ import annotations

import time

import pytest

from r1mega.rewards.core.extract import (
    extract_math_answer,
    last_answer_tag,
    last_boxed,
    last_code_block,
    looks_like_expression,
    normalize_gold,
    split_reasoning,
)


def test_split_reasoning_at_first_close_tag():
    assert split_reasoning("<think>a</think>b</think>c") == ("a", "b</think>c")
    assert split_reasoning("no tags") == (None, None)
    assert split_reasoning("no tags", require_close=False) == (None, "no tags")
    assert split_reasoning("opened in the prompt</think> final") == ("opened in the prompt", " final")


@pytest.mark.parametrize("text, expected", [
    ("\\boxed{42}", "42"),
    ("a \\boxed{1} b \\boxed{\\frac{1}{2}} c", "\\frac{1}{2}"),
    ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),
    ("\\boxed{a{b{c}}d}", "a{b{c}}d"),
    ("\\boxed 5 and more", "5"),
    ("\\fbox{7}", "7"),
    ("\\boxed{3} then \\boxed{unclosed", "3"),
    ("\\boxedfoo{1}", None),
    ("\\boxed{}", ""),
    ("nothing here", None),
])
def test_last_boxed(text, expected):
    assert last_boxed(text) == expected


def test_last_boxed_is_linear_on_hostile_input():
    text = "\\boxed{" * 50000
    start = time.monotonic()
    assert last_boxed(text) is None
    assert time.monotonic() - start < 0.5


def test_answer_tag():
    assert last_answer_tag("<answer>1</answer> <answer> 2 </answer>") == " 2 "
    assert last_answer_tag("<answer>unclosed") is None


@pytest.mark.parametrize("completion, expected", [
    ("<think>x</think> The answer is \\boxed{5}.", ("5", "boxed", True)),
    ("<think>\\boxed{1}</think> so \\boxed{2}", ("2", "boxed", True)),
    ("<think>x</think> <answer> \\sqrt{12} </answer>", ("\\sqrt{12}", "answer_tag", True)),
    ("<think>x</think> <answer> The answer is $5$ </answer>", ("The answer is $5$", "answer_tag", False)),
    ("<think>x</think> <answer> so \\boxed{7} </answer> \\boxed{8}", ("7", "answer_tag", True)),
])
def test_extract_math_answer(completion, expected):
    found = extract_math_answer(completion)
    assert (found.text, found.form, found.is_latex) == expected


def test_extract_requires_closed_reasoning_by_default():
    unfinished = "<think>so the answer is \\boxed{5}"
    assert extract_math_answer(unfinished) is None
    assert extract_math_answer(unfinished, require_think=False).text == "5"
    assert extract_math_answer("<think>\\boxed{5}</think> no box here") is None


def test_free_text_fallback_and_forms():
    completion = "<think>x</think> The answer is 5."
    assert extract_math_answer(completion) is None
    assert extract_math_answer(completion, free_text_fallback=True).form == "free_text"
    tagged = "<think>x</think> <answer>3</answer>"
    assert extract_math_answer(tagged, forms=("boxed",)) is None


def test_looks_like_expression():
    assert looks_like_expression("(a-b)(a+b)")
    assert looks_like_expression("\\text{New York}")
    assert not looks_like_expression("The answer is 5")
    assert not looks_like_expression("$5$")


def test_normalize_gold():
    assert normalize_gold("\\boxed{\\frac12}") == "\\frac12"
    assert normalize_gold(" $x=2$ ") == "x=2"
    assert normalize_gold("405") == "405"


def test_last_code_block():
    text = "```python\nprint(1)\n```\nthen\n```cpp\nint main(){}\n```\n```text\nignored\n```"
    block = last_code_block(text)
    assert (block.language, block.code) == ("cpp", "int main(){}\n")
    assert last_code_block(text, languages=("python",)).code == "print(1)\n"
    assert last_code_block("```py\nx = 1\n```").language == "python"
    assert last_code_block("```python\nunclosed") is None
    assert last_code_block("no code") is None
