"""Format reward: is the reasoning where the recipe says it must be?

Two layouts, both from the DeepSeek-R1 paper:

``think`` (R1)
    ``<think> reasoning </think> summary``: the completion starts (after whitespace) with the
    only ``<think>``, contains exactly one ``</think>``, the reasoning is not empty and some
    final text follows it. Chat templates that already open ``<think>`` in the prompt (R1's
    own template does) set ``think_in_prompt`` -- the completion then must *not* contain
    ``<think>`` and must contain exactly one ``</think>``.

``answer_tag`` (R1-Zero template)
    ``<think> reasoning </think> <answer> answer </answer>`` and nothing else around them
    except whitespace, each tag exactly once.

The value is 1.0 or 0.0. Checks use ``str.count`` / ``str.find`` only (no regex
backtracking on long completions).
"""

from __future__ import annotations

from dataclasses import dataclass

from r1mega.rewards.core.component import Component, one_of
from r1mega.rewards.core.extract import ANSWER_CLOSE, ANSWER_OPEN, THINK_CLOSE, THINK_OPEN
from r1mega.rewards.core.types import RewardItem, Score

_MODES = ("think", "answer_tag")


@dataclass
class FormatOptions:
    """Options of the ``format`` component."""

    mode: str = "think"
    """``think`` (R1: reasoning in <think></think>, then a summary) or ``answer_tag`` (R1-Zero)."""
    think_in_prompt: bool = False
    """The prompt already ends with ``<think>``, so the completion starts inside the reasoning."""
    require_final_text: bool = True
    """``think`` mode: some non-blank text must follow ``</think>``."""

    def __post_init__(self) -> None:
        one_of(self.mode, _MODES, "mode")


def _think_layout(text: str, opts: FormatOptions) -> tuple[bool, str]:
    """Check the R1 layout; returns (ok, reason)."""
    if text.count(THINK_OPEN) != 1 or text.count(THINK_CLOSE) != 1:
        return False, "think_tag_count"
    open_at, close_at = text.find(THINK_OPEN), text.find(THINK_CLOSE)
    if text[:open_at].strip() or close_at < open_at:
        return False, "think_not_first"
    if not text[open_at + len(THINK_OPEN):close_at].strip():
        return False, "empty_reasoning"
    if opts.require_final_text and not text[close_at + len(THINK_CLOSE):].strip():
        return False, "no_final_text"
    return True, "ok"


def _answer_tag_layout(text: str) -> tuple[bool, str]:
    """Check the R1-Zero layout; returns (ok, reason)."""
    for tag in (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE):
        if text.count(tag) != 1:
            return False, "tag_count"
    positions = [text.find(t) for t in (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)]
    if positions != sorted(positions):
        return False, "tag_order"
    t_open, t_close, a_open, a_close = positions
    if text[:t_open].strip() or text[a_close + len(ANSWER_CLOSE):].strip():
        return False, "text_outside_tags"
    if text[t_close + len(THINK_CLOSE):a_open].strip():
        return False, "text_between_tags"
    if not text[a_open + len(ANSWER_OPEN):a_close].strip():
        return False, "empty_answer"
    return True, "ok"


def check_format(completion: str, opts: FormatOptions) -> tuple[bool, str]:
    """Whether ``completion`` follows the layout of ``opts.mode``, with a short reason."""
    if opts.think_in_prompt:
        if THINK_OPEN in completion:
            return False, "think_tag_count"
        completion = THINK_OPEN + completion
    if opts.mode == "think":
        return _think_layout(completion, opts)
    return _answer_tag_layout(completion)


class FormatReward(Component):
    """See the module docstring."""

    name = "format"
    Options = FormatOptions

    def plan(self, item: RewardItem) -> Score:
        ok, reason = check_format(item.completion, self.options)
        return Score(1.0 if ok else 0.0, reason)
