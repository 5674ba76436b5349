"""Evaluate a policy on held-out questions through any rollout engine and the reward rules.

Each data-parallel rank answers its share of questions (k sampled responses plus one greedy);
results are gathered on every rank and reduced to the metrics of :mod:`r1mega.eval.metrics`.
Equivalence for majority voting goes through the same sandboxed math verifier as the rewards
(with its time limit), never through an unguarded sympy call on model output.
"""

from __future__ import annotations

from statistics import mean

import torch.distributed as dist

from r1mega.data.templates import encode_prompts
from r1mega.eval.metrics import majority_correct, normalize_answer, pass_at_k
from r1mega.rollout.base import SamplingParams


def accuracy_of(result) -> float:
    """The accuracy component of a reward result (math or code), else 1 if the reward > 0."""
    acc = [v for k, v in result.components.items() if k.endswith("accuracy")]
    return float(max(acc)) if acc else float(result.reward > 0)


def _equivalence(rewarder, source: str):
    cache: dict = {}

    def same(a: str, b: str) -> bool:
        if normalize_answer(a) == normalize_answer(b):
            return True
        key = (a, b)
        if key not in cache:
            item = {"completion": f"<think></think>\\boxed{{{b}}}", "answer": a, "data_source": "math"}
            cache[key] = accuracy_of(rewarder.score_batch([item])[0]) > 0.5
        return cache[key]

    return same


def _extract(text: str):
    from r1mega.rewards.core.extract import extract_math_answer

    found = extract_math_answer(text)
    return found.text if found else None


def evaluate(engine, tokenizer, records: list[dict], template: str, rewarder, k: int,
             temperature: float, top_p: float, max_tokens: int, seed: int = 0, dp_group=None,
             keep_samples: bool = False, stop_token_ids: tuple = ()) -> dict:
    """Metrics over ``records`` (each needs prompt, answer, data_source). With ``keep_samples``
    the result also holds ``samples``: one dict per response (question id, prompt, answer,
    completion, score, greedy flag): k sampled then the greedy one per question, questions in
    the order of the gathered rows (rank 0's share first). ``stop_token_ids`` end a response
    as EOS does (the rollout's, so the model is evaluated as it is trained)."""
    rank = dist.get_rank(dp_group) if dist.is_initialized() else 0
    world = dist.get_world_size(dp_group) if dist.is_initialized() else 1
    mine = records[rank::world]
    prompts = encode_prompts(mine, tokenizer, template)
    sampled = engine.generate([p for p in prompts for _ in range(k)],
                              SamplingParams(temperature, top_p, -1, max_tokens, seed=seed,
                                             stop_token_ids=list(stop_token_ids)))
    greedy = engine.generate(prompts, SamplingParams(0.0, 1.0, -1, max_tokens, seed=seed,
                                                     stop_token_ids=list(stop_token_ids)))
    items = [{"completion": g.text, "answer": r["answer"], "data_source": r.get("data_source", "math")}
             for i, r in enumerate(mine) for g in sampled[i * k : (i + 1) * k]]
    items += [{"completion": g.text, "answer": r["answer"], "data_source": r.get("data_source", "math")}
              for r, g in zip(mine, greedy)]
    scores = [accuracy_of(s) for s in rewarder.score_batch(items)] if items else []
    rows = []
    for i, r in enumerate(mine):
        acc = scores[i * k : (i + 1) * k]
        answers = [_extract(g.text) for g in sampled[i * k : (i + 1) * k]]
        rows.append({
            "id": r.get("id", i), "correct": sum(a > 0.5 for a in acc), "acc": mean(acc),
            "cons": majority_correct(answers, [a > 0.5 for a in acc], _equivalence(rewarder, r.get("data_source", "math"))),
            "greedy": scores[len(mine) * k + i] > 0.5,
            "length": mean(len(g.token_ids) for g in sampled[i * k : (i + 1) * k]),
        })
        if keep_samples:
            outs = [(g, a, False) for g, a in zip(sampled[i * k : (i + 1) * k], acc)]
            outs.append((greedy[i], scores[len(mine) * k + i], True))
            rows[-1]["samples"] = [{"id": r.get("id", i), "prompt": r["prompt"], "answer": r["answer"],
                                    "completion": g.text, "score": s, "greedy": is_greedy}
                                   for g, s, is_greedy in outs]
    if world > 1:
        gathered = [None] * world
        dist.all_gather_object(gathered, rows, group=dp_group)
        rows = [row for part in gathered for row in part]
    if not rows:
        raise ValueError("evaluation got no questions")
    samples = {"samples": [s for r in rows for s in r["samples"]]} if keep_samples else {}
    return {
        **samples,
        "n_questions": len(rows), "k": k,
        "pass@1": mean(r["acc"] for r in rows),
        f"pass@{k}": mean(pass_at_k(k, r["correct"], k) for r in rows),
        f"cons@{k}": mean(float(r["cons"]) for r in rows),
        "greedy": mean(float(r["greedy"]) for r in rows),
        "mean_response_length": mean(r["length"] for r in rows),
    }


def write_samples(path, samples: list[dict]) -> None:
    """The ``samples`` of :func:`evaluate` as JSONL, written atomically."""
    import json

    from r1mega.training.ckpt_layout import atomic_write_text

    atomic_write_text(path, "".join(json.dumps(s) + "\n" for s in samples))
