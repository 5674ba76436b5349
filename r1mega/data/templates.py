"""Prompt templates: how a question becomes the tokens the model continues.

* ``r1_zero``: the R1-Zero template from the paper, verbatim, with the question substituted.
  It constrains only the format (reasoning in ``<think>``, answer in ``<answer>``), never the
  content, so RL alone has to discover how to reason.
* ``chat``: the tokenizer's own chat template (``apply_chat_template`` with a generation
  prompt); used for cold start, SFT, distillation, and any instruct-style model.
* ``plain``: the question followed by a newline; for base-model evaluation and tests.
"""

from __future__ import annotations

R1_ZERO_TEMPLATE = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant "
    "solves it. The assistant first thinks about the reasoning process in the mind and then "
    "provides the user with the answer. The reasoning process and answer are enclosed within "
    "<think> </think> and <answer> </answer> tags, respectively, i.e., <think> reasoning process "
    "here </think> <answer> answer here </answer>. User: {prompt}. Assistant:"
)

TEMPLATES = ("r1_zero", "chat", "plain")


def render_prompt(tokenizer, question: str, template: str, system: str | None = None) -> str:
    """The prompt text for ``question`` under ``template`` (see module doc)."""
    if template == "r1_zero":
        return R1_ZERO_TEMPLATE.format(prompt=question.rstrip().rstrip("."))
    if template == "plain":
        return question + "\n"
    if template == "chat":
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": question}
        ]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    raise ValueError(f"data.template={template!r} is not one of {TEMPLATES}")


def encode_prompts(records: list[dict], tokenizer, template: str) -> list[list[int]]:
    """The token ids of each record's ``prompt`` under ``template`` (what the rollout continues)."""
    return [tokenizer(render_prompt(tokenizer, r["prompt"], template), add_special_tokens=False)["input_ids"]
            for r in records]
