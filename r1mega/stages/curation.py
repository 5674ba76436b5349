"""From k sampled responses per prompt to the SFT records worth keeping.

This is the decision part of rejection sampling and distillation data generation, free of any
model or process group so it can be tested on strings. For one prompt and its k responses:

1. **verify** each response. Rule rewards (``r1mega.rewards``) decide when the record's
   ``data_source`` has an accuracy component and the record has what it needs (an answer or
   tests). Answers the rules cannot verify -- an unknown source, no reference, or a source
   listed in ``curation.judge_sources`` -- go to the *judge*. R1 used DeepSeek-V3 as a
   generative judge here: ``curation.judge=generative curation.judge_model=DIR`` asks a local
   Hugging Face causal LM whether the response's final answer matches the reference
   (:mod:`r1mega.data.judge`); ``curation.judge=module:function`` plugs in any callable
   ``judge(prompt, reference, response) -> bool`` instead (e.g. a call to a served model).
   Without a judge such responses are ``unverifiable``.
2. **filter** (``r1mega.stages.filters``): truncated, malformed, overlong, mixed-language,
   repetitive -- then correctness when ``curation.require_correct``.
3. **de-duplicate**: the same response text (whitespace-trimmed) twice for one prompt is kept once.
4. **cap**: at most ``curation.keep_per_prompt`` responses per prompt (in sample order).

Each kept response becomes a record ``{id, prompt, response, answer, data_source, provenance}``
that ``stage=sft`` reads directly; ``provenance`` says where it came from (checkpoint,
sampling parameters, sample index, rewards, who verified it). Every rejected response adds one
to the count of its reason, so a manifest accounts for all k x prompts samples.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Optional

from r1mega.data.curation import CurationConfig, load_judge
from r1mega.stages.filters import reject_reason


def make_judge(cfg: CurationConfig):
    """The configured judge callable, or None."""
    if cfg.judge is None:
        return None
    if cfg.judge == "generative":
        from r1mega.data.judge import GenerativeJudge

        return GenerativeJudge(cfg.judge_model, cfg.judge_options)
    return load_judge(cfg.judge)


@dataclass
class Verdict:
    """Whether one response is correct, and who said so ('rules', 'judge', or 'none')."""

    correct: Optional[bool]
    by: str
    reward: float = 0.0
    components: dict = field(default_factory=dict)
    error: Optional[str] = None


def _rule_verdict(result) -> Optional[bool]:
    """Correctness from a reward result, or None when the rules could not decide."""
    acc = [v for k, v in result.components.items() if k.endswith("accuracy")]
    if result.error is not None or not acc:
        return None
    return max(acc) > 0.5


def verify_many(records: list[dict], texts: list[list[str]], rewarder, judge=None, judge_sources=()) -> list[list[Verdict]]:
    """Verdicts for ``texts[i]`` (responses to ``records[i]``), scored in one reward batch."""
    items = []
    for record, group in zip(records, texts):
        base = {k: record[k] for k in ("answer", "tests", "prompt") if record.get(k) is not None}
        items += [{**base, "completion": t, "data_source": record["data_source"]} for t in group]
    results = iter(rewarder.score_batch(items))
    return [[_verdict(record, t, next(results), judge, judge_sources) for t in group]
            for record, group in zip(records, texts)]


def verify(record: dict, texts: list[str], rewarder, judge=None, judge_sources=()) -> list[Verdict]:
    """One Verdict per response text of ``record`` (see the module docstring, step 1)."""
    return verify_many([record], [texts], rewarder, judge, judge_sources)[0]


def _verdict(record: dict, text: str, result, judge, judge_sources) -> Verdict:
    v = Verdict(None, "none", float(result.reward), dict(result.components), result.error)
    ruled = None if record["data_source"] in judge_sources else _rule_verdict(result)
    if ruled is not None:
        v.correct, v.by = ruled, "rules"
    elif judge is not None:
        try:
            v.correct, v.by = bool(judge(record["prompt"], record.get("answer"), text)), "judge"
        except Exception as e:  # a judge failure rejects the response, it does not stop the run
            v.by, v.error = "judge", f"judge raised {type(e).__name__}: {e}"
    return v


def _verdict_reason(v: Verdict) -> Optional[str]:
    if v.correct is None:
        return "judge_error" if v.by == "judge" else "unverifiable"
    return None if v.correct else "incorrect"


def curate_prompt(record: dict, gens: list, verdicts: list[Verdict], cfg: CurationConfig,
                  provenance: dict) -> tuple[list[dict], Counter]:
    """Kept SFT records for one prompt and the count of rejections by reason."""
    kept, reasons, seen = [], Counter(), set()
    for index, (gen, verdict) in enumerate(zip(gens, verdicts)):
        text = gen.text.strip()
        reason = reject_reason(text, len(gen.token_ids), gen.truncated, cfg.filters)
        if reason is None and cfg.require_correct:
            reason = _verdict_reason(verdict)
        if reason is None and text in seen:
            reason = "duplicate"
        if reason is None and cfg.keep_per_prompt and len(kept) >= cfg.keep_per_prompt:
            reason = "over_cap"
        if reason is not None:
            reasons[reason] += 1
            continue
        seen.add(text)
        kept.append(_record(record, text, index, gen, verdict, provenance))
    return kept, reasons


def _record(record: dict, text: str, index: int, gen, verdict: Verdict, provenance: dict) -> dict:
    out = {"id": f"{record.get('id', 'prompt')}-s{index}", "prompt": record["prompt"], "response": text}
    for key in ("answer", "data_source", "tests"):
        if record.get(key) is not None:
            out[key] = record[key]
    out["provenance"] = {
        **provenance, "prompt_id": record.get("id"), "sample_index": index, "reward": verdict.reward,
        "components": verdict.components, "verified_by": verdict.by, "correct": verdict.correct,
        "num_tokens": len(gen.token_ids), "finish_reason": gen.finish_reason,
    }
    return out
