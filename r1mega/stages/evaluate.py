"""Stage ``eval``: held-out pass@1, pass@k, cons@k, greedy accuracy and length of a checkpoint.

    r1mega-train stage=eval trainer.init_from=CKPT_DIR [evaluation.k=8]
    r1mega-train stage=eval trainer.init_from=CKPT_DIR data.tokenizer=/hf/model \
        evaluation.files=[aime24.jsonl,math500.jsonl]

The questions are ``evaluation.files`` (AIME-style / MATH-500-style JSONL, problem + answer;
:mod:`r1mega.eval.benchmarks`) or, by default, the test split of ``data`` (the synthetic one).
Loads the newest complete checkpoint under ``trainer.init_from`` (any layout), samples
``evaluation.k`` responses per question at ``evaluation.temperature`` / ``top_p`` (the
paper's 0.6 / 0.95) plus one greedy response, scores them with the reward rules, and writes
``eval.json`` (and the same under ``eval`` in ``summary.json``).
"""

from __future__ import annotations

import json

from r1mega.config.schema import R1Config
from r1mega.data.tokenizer import load_tokenizer
from r1mega.eval.benchmarks import eval_records
from r1mega.eval.runner import write_samples
from r1mega.parallel.comm import is_logging_rank
from r1mega.parallel.dims import ParallelDims
from r1mega.stages import lifecycle
from r1mega.training import checkpoint as ckpt
from r1mega.training.ckpt_layout import atomic_write_text
from r1mega.training.metrics import write_summary
from r1mega.training.setup import build_chunks


def run(cfg: R1Config, dims: ParallelDims) -> dict:
    from megatron.core import parallel_state as ps

    from r1mega.rewards import RewardManager
    from r1mega.rollout.factory import build_engine

    records = eval_records(cfg)  # bad files fail before any model is built
    if cfg.rollout.engine == "vllm":
        from r1mega.stages.sampled_dataset import require_vllm

        require_vllm()  # a clear error with the fix instead of an ImportError later
    run_dir = lifecycle.start(cfg, dims)
    tokenizer = load_tokenizer(cfg.data.tokenizer)
    chunks = build_chunks(cfg.model, dims, cfg.trainer.precision)
    if cfg.trainer.init_from:
        ckpt.load_policy(cfg.trainer.init_from, chunks)
    engine = build_engine(cfg, tokenizer, dims, chunks=chunks, seed_offset=ps.get_data_parallel_rank() * 7919)
    with RewardManager(cfg.reward) as rewarder:
        result = lifecycle.held_out(cfg, engine, tokenizer, rewarder, records)
    samples = result.pop("samples", None)
    result["checkpoint"] = cfg.trainer.init_from
    result["questions_from"] = list(map(str, cfg.evaluation.files)) or f"data ({cfg.data.source}) test split"
    result["sampling"] = {"temperature": cfg.evaluation.temperature, "top_p": cfg.evaluation.top_p,
                          "max_tokens": cfg.evaluation.max_tokens or cfg.rollout.max_tokens}
    if is_logging_rank():
        atomic_write_text(run_dir / "eval.json", json.dumps(result, indent=2) + "\n")
        if samples is not None:
            write_samples(run_dir / "eval_samples.jsonl", samples)
        write_summary(run_dir, {"stage": cfg.stage.label or "eval", "eval": result})
    lifecycle.finish()
    return result
