"""Format reward: the R1 <think> layout and the R1-Zero <answer> layout."""

from __future__ import annotations

import pytest

from r1mega.rewards.core.types import RewardItem
from r1mega.rewards.text.format_reward import FormatOptions, FormatReward, check_format


@pytest.mark.parametrize("completion, ok, reason", [
    ("<think>\nreason\n</think>\nThe answer is \\boxed{405}.", True, "ok"),
    ("  <think>r</think> final", True, "ok"),
    ("<think>r</think>", False, "no_final_text"),
    ("<think>   </think> final", False, "empty_reasoning"),
    ("preamble <think>r</think> final", False, "think_not_first"),
    ("<think>r</think> x </think> y", False, "think_tag_count"),
    ("<think>a<think>b</think> c", False, "think_tag_count"),
    ("no tags at all", False, "think_tag_count"),
    ("<think>never closed", False, "think_tag_count"),
])
def test_think_layout(completion, ok, reason):
    assert check_format(completion, FormatOptions()) == (ok, reason)


def test_think_opened_by_the_prompt():
    opts = FormatOptions(think_in_prompt=True)
    assert check_format("reasoning</think> final", opts) == (True, "ok")
    assert check_format("<think>reasoning</think> final", opts) == (False, "think_tag_count")


def test_final_text_can_be_optional():
    assert check_format("<think>r</think>", FormatOptions(require_final_text=False)) == (True, "ok")


@pytest.mark.parametrize("completion, ok, reason", [
    ("<think> r </think> <answer> 5 </answer>", True, "ok"),
    ("<think>r</think>\n<answer>5</answer>\n", True, "ok"),
    ("<think>r</think> so <answer>5</answer>", False, "text_between_tags"),
    ("<think>r</think><answer>5</answer> trailing", False, "text_outside_tags"),
    ("<answer>5</answer><think>r</think>", False, "tag_order"),
    ("<think>r</think><answer> </answer>", False, "empty_answer"),
    ("<think>r</think><answer>5</answer><answer>6</answer>", False, "tag_count"),
])
def test_answer_tag_layout(completion, ok, reason):
    assert check_format(completion, FormatOptions(mode="answer_tag")) == (ok, reason)


def test_component_values():
    component = FormatReward(FormatOptions())
    good = component.plan(RewardItem("<think>r</think> done", "math"))
    bad = component.plan(RewardItem("done", "math"))
    assert (good.value, bad.value) == (1.0, 0.0)
    assert bad.status == "think_tag_count"
