"""Pulling the scored part out of a completion.

DeepSeek-R1 completions look like ``<think> reasoning </think> summary``; R1-Zero's template
asks for ``<think> reasoning </think> <answer> answer </answer>``. Rewards judge the part after
the reasoning, so everything here starts from :func:`split_reasoning`:

* the reasoning ends at the **first** ``</think>`` (the convention of vLLM's R1 reasoning
  parser). Without a closing tag the model never finished thinking, and by default there is
  no answer to score.
* the maths answer is the content of the **last** ``<answer>...</answer>`` (R1-Zero form) or the
  last ``\\boxed{...}`` (R1 form) after the reasoning. When an answer tag holds a ``\\boxed``,
  the boxed content wins.
* the program is the **last** fenced block (```` ```python ```` / ```` ```cpp ````) after the
  reasoning.

Every scan here is linear in the completion length (``str.find`` / ``rfind`` and one pass of
brace matching); nothing backtracks, so hostile completions cannot stall the caller, which runs
this in the main process.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
ANSWER_OPEN = "<answer>"
ANSWER_CLOSE = "</answer>"
_BOX_COMMANDS = ("\\boxed", "\\fbox")

# Fence tag -> canonical language name.
CODE_LANGUAGES = {
    "python": "python",
    "py": "python",
    "python3": "python",
    "cpp": "cpp",
    "c++": "cpp",
    "cc": "cpp",
    "cxx": "cpp",
}
_BARE_BOX_ARG = re.compile(r"[^\s$]+")
# Candidates tried from the right before giving up: bounds the work on inputs like
# "\boxed{\boxed{\boxed{..." whose braces never close (each failed try scans to the end).
_MAX_BOX_CANDIDATES = 16
_FENCE = re.compile(r"^[ \t]*```[ \t]*([A-Za-z0-9_+\-]*)[^\n]*$", re.MULTILINE)


def split_reasoning(completion: str, require_close: bool = True) -> tuple[str | None, str | None]:
    """Return ``(reasoning, final_part)`` split at the first ``</think>``.

    Without ``</think>``: ``(None, None)`` when ``require_close``, else ``(None, completion)``
    (the whole completion is treated as the final part).
    """
    idx = completion.find(THINK_CLOSE)
    if idx < 0:
        return (None, None) if require_close else (None, completion)
    reasoning = completion[:idx]
    open_idx = reasoning.find(THINK_OPEN)
    if open_idx >= 0:
        reasoning = reasoning[open_idx + len(THINK_OPEN):]
    return reasoning, completion[idx + len(THINK_CLOSE):]


def _matching_brace(text: str, open_idx: int) -> int:
    """Index of the ``}`` closing the ``{`` at ``open_idx``, or -1 (escaped braces skipped)."""
    depth = 0
    i = open_idx
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def _boxed_at(text: str, start: int, command: str) -> str | None:
    """Content of ``\\boxed{...}`` / ``\\boxed x`` whose command starts at ``start``."""
    i = start + len(command)
    if i < len(text) and text[i].isalpha():
        return None  # e.g. \boxedfoo: a different command
    while i < len(text) and text[i] == " ":
        i += 1
    if i >= len(text):
        return None
    if text[i] == "{":
        end = _matching_brace(text, i)
        return text[i + 1:end] if end > 0 else None
    if i > start + len(command):  # "\boxed 5": content runs to the next space or '$'
        m = _BARE_BOX_ARG.match(text, i)
        return m.group(0) if m else None
    return None


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) in ``text``, else None."""
    pos = len(text)
    for _ in range(_MAX_BOX_CANDIDATES):
        starts = [text.rfind(cmd, 0, pos) for cmd in _BOX_COMMANDS]
        start = max(starts)
        if start < 0:
            return None
        command = _BOX_COMMANDS[starts.index(start)]
        content = _boxed_at(text, start, command)
        if content is not None:
            return content
        pos = start
    return None


def last_answer_tag(text: str) -> str | None:
    """Content of the last complete ``<answer>...</answer>`` in ``text``, else None."""
    close = text.rfind(ANSWER_CLOSE)
    if close < 0:
        return None
    open_ = text.rfind(ANSWER_OPEN, 0, close)
    if open_ < 0:
        return None
    return text[open_ + len(ANSWER_OPEN):close]


@dataclass(frozen=True)
class ExtractedAnswer:
    """A final answer found in a completion."""

    text: str
    """The answer text (boxed content, or the answer-tag content)."""
    form: str
    """Where it came from: ``boxed``, ``answer_tag`` or ``free_text``."""
    is_latex: bool
    """True when ``text`` is a bare maths expression; False when it may contain prose."""


_TEXT_COMMAND = re.compile(r"\\(?:text|textbf|textit|mathrm|mbox)\{[^{}]*\}")
_TWO_WORDS = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{2,}[ \t]+[A-Za-z]{2,}(?![A-Za-z])")


def looks_like_expression(text: str) -> bool:
    """Whether an ``<answer>`` body is a bare expression (``\\sqrt{12}``, ``3, -2``, ``even``)
    rather than prose with maths in it (``The answer is $5$``).

    Prose has explicit maths delimiters or two plain words in a row outside ``\\text{}``.
    """
    if "$" in text or "\\(" in text or "\\[" in text:
        return False
    return _TWO_WORDS.search(_TEXT_COMMAND.sub(" ", text)) is None


def extract_math_answer(
    completion: str,
    forms: tuple[str, ...] = ("boxed", "answer_tag"),
    require_think: bool = True,
    free_text_fallback: bool = False,
) -> ExtractedAnswer | None:
    """Find the final maths answer of a completion (see module docstring for the rules)."""
    _, final = split_reasoning(completion, require_close=require_think)
    if final is None:
        return None
    if "answer_tag" in forms:
        tagged = last_answer_tag(final)
        if tagged is not None:
            boxed = last_boxed(tagged)
            if boxed is not None:
                return ExtractedAnswer(boxed, "answer_tag", True)
            return ExtractedAnswer(tagged.strip(), "answer_tag", looks_like_expression(tagged))
    if "boxed" in forms:
        boxed = last_boxed(final)
        if boxed is not None:
            return ExtractedAnswer(boxed, "boxed", True)
    if free_text_fallback and final.strip():
        return ExtractedAnswer(final.strip(), "free_text", False)
    return None


def normalize_gold(answer: str) -> str:
    """Gold answers may arrive boxed or wrapped in ``$``; reduce them to the bare expression."""
    boxed = last_boxed(answer)
    text = boxed if boxed is not None else answer
    text = text.strip()
    if len(text) >= 2 and text.startswith("$") and text.endswith("$"):
        text = text.strip("$").strip()
    return text


@dataclass(frozen=True)
class CodeBlock:
    """A fenced code block."""

    language: str
    """Canonical language: ``python`` or ``cpp``."""
    code: str
    """The block's body, without the fences."""


def last_code_block(text: str, languages: tuple[str, ...] = ("python", "cpp")) -> CodeBlock | None:
    """The last fenced block whose tag names one of ``languages``, else None.

    Fences pair up in order (open, close, open, close, ...); an unclosed final fence is ignored.
    """
    fences = list(_FENCE.finditer(text))
    found: CodeBlock | None = None
    i = 0
    while i + 1 < len(fences):
        opening, closing = fences[i], fences[i + 1]
        language = CODE_LANGUAGES.get(opening.group(1).lower())
        if language in languages:
            found = CodeBlock(language, text[opening.end() + 1:closing.start()])
        i += 2
    return found
