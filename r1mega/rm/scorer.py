"""Score (prompt, response) pairs with a local Hugging Face preference reward model.

The model is any ``AutoModelForSequenceClassification`` with ``num_labels=1`` saved with its
tokenizer (``save_pretrained``); its single logit is the reward. R1 judges *helpfulness on the
final summary only*, so with ``scope=summary`` the response is cut to the text after
``</think>`` before scoring (a response without one gets ``no_summary_reward``); with
``scope=completion`` the whole response is judged (R1's harmlessness model).

The pair is formatted with the reward model's chat template when its tokenizer has one
(user = prompt, assistant = response), else as ``prompt + "\\n" + response``; inputs longer
than ``max_length`` tokens keep their start, padding goes on the right.
"""

from __future__ import annotations

from pathlib import Path

from r1mega.config.all_scenario import RewardModelConfig
from r1mega.rewards.core.extract import split_reasoning
from r1mega.device import device


class RewardModelScorer:
    """Loads the model once; :meth:`score` maps pairs to floats."""

    def __init__(self, path: str | Path, cfg: RewardModelConfig):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

        path = Path(path)
        if not (path / "config.json").is_file():
            raise ValueError(f"all_scenario.reward_model.path={str(path)!r} holds no Hugging Face model (config.json)")
        self.cfg = cfg
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.tokenizer.padding_side = "right"
        self.model = AutoModelForSequenceClassification.from_pretrained(str(path), local_files_only=True)
        if self.model.config.num_labels != 1:
            raise ValueError(f"all_scenario.reward_model.path={str(path)!r}: num_labels={self.model.config.num_labels}, "
                             "a reward model needs num_labels=1")
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.device = device()
        self.model.to(self.device).eval()

    def judged_text(self, response: str) -> str | None:
        """The part of ``response`` the model sees (None: nothing to judge)."""
        if self.cfg.scope == "completion":
            return response
        _, summary = split_reasoning(response, require_close=True)
        return summary.strip() if summary is not None and summary.strip() else None

    def _format(self, prompt: str, text: str) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            msgs = [{"role": "user", "content": prompt}, {"role": "assistant", "content": text}]
            return self.tokenizer.apply_chat_template(msgs, tokenize=False)
        return f"{prompt}\n{text}"

    def score(self, prompts: list[str], responses: list[str]) -> list[float]:
        """scale * logit per pair; ``no_summary_reward`` where there is nothing to judge."""
        import torch

        out = [self.cfg.no_summary_reward] * len(prompts)
        todo = [(i, self._format(p, t)) for i, (p, r) in enumerate(zip(prompts, responses))
                if (t := self.judged_text(r)) is not None]
        bs = self.cfg.batch_size
        with torch.no_grad():
            for j in range(0, len(todo), bs):
                part = todo[j:j + bs]
                enc = self.tokenizer([t for _, t in part], return_tensors="pt", padding=True, truncation=True,
                                     max_length=self.cfg.max_length, add_special_tokens=False).to(self.device)
                logits = self.model(**enc).logits[:, 0].float().cpu().tolist()
                for (i, _), v in zip(part, logits):
                    out[i] = self.cfg.scale * v
        return out
