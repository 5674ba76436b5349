"""Held-out questions for evaluation: AIME-style and MATH-500-style JSONL, or the data's test split.

The public math benchmarks ship as JSONL with a question and a final answer, under a few
spellings:

* MATH-500 (``HuggingFaceH4/MATH-500``): ``problem``, ``answer`` (LaTeX, e.g.
  ``\\frac{14}{3}``), ``solution``, ``subject``, ``level``, ``unique_id``;
* AIME 2024/2025 exports: ``problem`` / ``Problem`` / ``question``, ``answer`` / ``Answer``
  (an integer 0..999, sometimes stored as a number), ``id`` / ``ID``.

:func:`load_benchmark` reads any of these (``format=auto`` picks the first key present in each
record; ``aime`` / ``math500`` / ``prompt`` pin the keys) and returns r1mega's canonical eval
records ``{id, prompt, answer, data_source}``; answers become strings, so ``204`` and
``"204"`` compare alike. A record without a question or an answer stops the load with
``file:line: what is missing``. With ``evaluation.files`` empty, stage=eval uses the data
group's test split instead -- the bundled synthetic split by default -- so every pipeline
evaluation of a run uses the same questions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from r1mega.config.errors import ConfigError
from r1mega.data.jsonl import json_lines

FORMATS = {
    # format -> (question keys, answer keys, id keys), tried in order
    "auto": (("problem", "Problem", "question", "Question", "prompt"), ("answer", "Answer"),
             ("id", "ID", "unique_id")),
    "math500": (("problem",), ("answer",), ("unique_id", "id")),
    "aime": (("problem", "Problem", "question", "Question"), ("answer", "Answer"), ("id", "ID")),
    "prompt": (("prompt",), ("answer",), ("id",)),
}


@dataclass
class EvalConfig:
    """Held-out evaluation: which questions stage=eval scores, and how every evaluation samples
    (stage=eval and the RL stages' eval_before / eval_after)."""

    temperature: float = 0.6
    """Evaluation sampling temperature (the paper: 0.6)."""
    top_p: float = 0.95
    """Evaluation top-p (the paper: 0.95)."""
    k: int = 8
    """Samples per held-out question for pass@1 / cons@k."""
    max_tokens: Optional[int] = None
    """Longest evaluation response; None means rollout.max_tokens."""
    files: list = field(default_factory=list)
    """Benchmark JSONL files (AIME-style, MATH-500-style: problem + answer); empty = the test
    split of ``data`` (the bundled synthetic one by default)."""
    format: str = "auto"
    """Field names of ``files``: auto (problem/Problem/question/prompt + answer/Answer), aime,
    math500, prompt."""
    data_source: str = "math"
    """Reward route of benchmark records that name none (math = math-verify equivalence)."""
    max_questions: int = 0
    """Evaluate only the first N questions; 0 = all."""
    save_samples: bool = False
    """Also write every sampled and greedy response with its score to ``eval_samples.jsonl``
    (RL stages: ``eval_samples_before.jsonl`` / ``eval_samples_after.jsonl``) in the run dir."""

    def validate_sampling(self, prefix: str = "evaluation") -> None:
        """The sampling settings (every stage that evaluates: eval and the RL stages)."""
        if self.temperature < 0:
            raise ConfigError(f"{prefix}.temperature must be >= 0")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"{prefix}.top_p={self.top_p} must be in (0, 1]")
        if self.k < 1:
            raise ConfigError(f"{prefix}.k must be >= 1, got {self.k}")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ConfigError(f"{prefix}.max_tokens must be >= 1 or null, got {self.max_tokens}")

    def validate(self, prefix: str = "evaluation") -> None:
        """Everything stage=eval reads: sampling, and the benchmark files."""
        self.validate_sampling(prefix)
        if self.format not in FORMATS:
            raise ConfigError(f"{prefix}.format={self.format!r} is not one of {tuple(FORMATS)}")
        if self.max_questions < 0:
            raise ConfigError(f"{prefix}.max_questions must be >= 0, got {self.max_questions}")
        for f in self.files:
            if not Path(f).expanduser().is_file():
                raise ConfigError(f"{prefix}.files: {f} does not exist")


def _first(raw: dict, keys: tuple):
    for k in keys:
        if raw.get(k) not in (None, ""):
            return raw[k]
    return None


def load_benchmark(path, fmt: str = "auto", data_source: str = "math") -> list[dict]:
    """Canonical eval records of one benchmark JSONL file (see the module docstring)."""
    path = Path(path).expanduser()
    q_keys, a_keys, id_keys = FORMATS[fmt]
    out = []
    for n, raw in json_lines(path, "evaluation.files"):
        if not isinstance(raw, dict):
            raise ValueError(f"evaluation.files: {path}:{n}: expected a JSON object")
        question, answer = _first(raw, q_keys), _first(raw, a_keys)
        if not isinstance(question, str):
            raise ValueError(f"evaluation.files: {path}:{n}: no question (one of {list(q_keys)}) for format={fmt}")
        if answer is None:
            raise ValueError(f"evaluation.files: {path}:{n}: no answer (one of {list(a_keys)}) for format={fmt}")
        ident = _first(raw, id_keys)
        out.append({"id": str(ident) if ident is not None else f"{path.stem}-{n}", "prompt": question,
                    "answer": str(answer).strip(), "data_source": raw.get("data_source") or data_source})
    if not out:
        raise ValueError(f"evaluation.files: {path} holds no questions")
    return out


def eval_records(cfg) -> list[dict]:
    """The questions of a stage=eval run: ``evaluation.files`` or the data's test split."""
    from r1mega.data.loaders import load_split

    ev: EvalConfig = cfg.evaluation  # validated by R1Config.validate
    if ev.files:
        records = [r for f in ev.files for r in load_benchmark(f, ev.format, ev.data_source)]
    else:
        records, _ = load_split(cfg.data, "test", need_response=False)
        missing = next((r for r in records if r.get("answer") is None), None)
        if missing is not None:
            raise ValueError(f"data.test_files: record {missing.get('id', missing['prompt'][:40])!r} has no "
                             f"{cfg.data.answer_key!r}; evaluation needs a reference answer")
    return records[: ev.max_questions] if ev.max_questions else records
