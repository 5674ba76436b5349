"""A generative judge: a local language model decides whether a response matches the reference.

Rules verify what they can parse (numbers, LaTeX, code tests). For the rest -- free-form
answers, units, names -- R1 "feeds the ground-truth and model predictions into DeepSeek-V3 for
judgment" during rejection sampling. :class:`GenerativeJudge` is that hook for any local
Hugging Face causal LM (``AutoModelForCausalLM`` saved with its tokenizer):

1. the question, the reference answer and the response's *final summary* (the text after
   ``</think>``; the whole response when there is none) are put into a grading prompt, rendered
   with the judge's chat template when its tokenizer has one (cut to ``max_answer_chars``);
2. the judge does not sample: it scores the two possible replies, ``yes_word`` and ``no_word``,
   by their log-likelihood as a continuation of the prompt (summed over their tokens);
3. the response is judged correct when ``log p(yes) - log p(no) > margin``.

Scoring both replies instead of sampling one makes the verdict deterministic and independent
of how the judge would phrase an answer. Select it with ``curation.judge=generative
curation.judge_model=/models/judge``; any other ``module:function`` callable still works.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from r1mega.device import device
from r1mega.rewards.core.extract import split_reasoning

INSTRUCTION = (
    "You are grading an answer against a reference.\n"
    "Question: {question}\n"
    "Reference answer: {reference}\n"
    "Answer to grade: {answer}\n"
    "Does the answer to grade state the same final result as the reference answer? Reply {yes} or {no}."
)


@dataclass
class JudgeConfig:
    """The generative judge (``curation.judge=generative``)."""

    yes_word: str = "Yes"
    """Reply meaning 'equivalent'."""
    no_word: str = "No"
    """Reply meaning 'not equivalent'."""
    margin: float = 0.0
    """Correct when log p(yes) - log p(no) exceeds this."""
    max_answer_chars: int = 2000
    """The graded answer is cut to this many characters (its start is kept)."""


class GenerativeJudge:
    """``judge(prompt, reference, response) -> bool`` backed by a local causal LM."""

    def __init__(self, path: str | Path, cfg: Optional[JudgeConfig] = None):
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        path = Path(path).expanduser()
        if not (path / "config.json").is_file():
            raise ValueError(f"curation.judge_model={str(path)!r} holds no Hugging Face model (config.json)")
        self.cfg = cfg or JudgeConfig()
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self.model = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True)
        self.device = device()
        self.model.to(self.device).eval()
        self.replies = {w: self.tokenizer(w, add_special_tokens=False)["input_ids"]
                        for w in (self.cfg.yes_word, self.cfg.no_word)}
        if not all(self.replies.values()) or self.cfg.yes_word == self.cfg.no_word:
            raise ValueError(f"curation.judge: yes/no words {self.cfg.yes_word!r}/{self.cfg.no_word!r} must be "
                             "distinct and non-empty")

    def render(self, question: str, reference, response: str) -> str:
        """The grading prompt, ready for the judge to continue."""
        _, summary = split_reasoning(response, require_close=True)
        answer = (summary if summary is not None and summary.strip() else response).strip()
        text = INSTRUCTION.format(question=question, reference="" if reference is None else reference,
                                  answer=answer[: self.cfg.max_answer_chars], yes=self.cfg.yes_word,
                                  no=self.cfg.no_word)
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                                      add_generation_prompt=True)
        return text + "\nReply: "

    def log_odds(self, question: str, reference, response: str) -> float:
        """log p(yes_word | prompt) - log p(no_word | prompt)."""
        import torch

        prompt = self.tokenizer(self.render(question, reference, response), add_special_tokens=False)["input_ids"]
        out = []
        with torch.no_grad():
            for word in (self.cfg.yes_word, self.cfg.no_word):
                reply = self.replies[word]
                ids = torch.tensor([prompt + reply], device=self.device)
                logp = torch.log_softmax(self.model(input_ids=ids).logits[0].double(), dim=-1)
                positions = range(len(prompt) - 1, len(prompt) - 1 + len(reply))
                out.append(sum(float(logp[p, t]) for p, t in zip(positions, reply)))
        return out[0] - out[1]

    def __call__(self, question: str, reference, response: str) -> bool:
        return self.log_odds(question, reference, response) > self.cfg.margin
