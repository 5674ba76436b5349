"""The engine room of stage=rejection_sampling and stage=distill_generate.

Top to bottom:

1. load the policy: the newest complete checkpoint under ``trainer.init_from``, at any layout,
   into a rollout engine (the built-in Megatron engine, or vLLM with ``rollout.engine=vllm``);
2. number the prompts' chunks (``curation.chunk_prompts`` each) and skip those any earlier run
   finished (:mod:`r1mega.stages.shards`); deal the rest round-robin over data-parallel ranks;
3. per chunk: sample ``curation.samples_per_prompt`` responses per prompt, verify, filter,
   de-duplicate and cap (:mod:`r1mega.stages.curation`), append the kept records to this
   rank's shard -- so the data streams to disk and a killed run loses at most one chunk;
4. rank 0 merges the shards in chunk order into ``<run dir>/<curation.output>`` and writes
   ``manifest.json`` (kept / rejected per reason / per source) atomically, last.

A chunk is sampled with its own seed (``trainer.seed + chunk id``) from a fresh generator, so
its responses do not depend on which rank drew it or on what ran before: a resumed or
re-sharded run produces the same dataset as an uninterrupted one.
"""

from __future__ import annotations

import importlib.util
import json
import time
from collections import Counter
from pathlib import Path

import torch.distributed as dist

from r1mega.config.errors import ConfigError
from r1mega.config.schema import R1Config
from r1mega.data.loaders import load_split
from r1mega.data.templates import encode_prompts
from r1mega.data.tokenizer import load_tokenizer
from r1mega.parallel.comm import is_logging_rank
from r1mega.parallel.dims import ParallelDims
from r1mega.rollout.base import SamplingParams
from r1mega.stages import lifecycle
from r1mega.stages.curation import curate_prompt, make_judge, verify_many
from r1mega.stages.shards import ShardWriter, check_plan, merge, read_progress
from r1mega.training import checkpoint as ckpt
from r1mega.training.ckpt_layout import atomic_write_text
from r1mega.training.metrics import write_summary


def require_vllm() -> None:
    """ConfigError with the fix when rollout.engine=vllm cannot work here."""
    if importlib.util.find_spec("vllm") is None:
        raise ConfigError("rollout.engine=vllm needs the vllm package (pip install 'r1mega[vllm]' on a GPU "
                         "machine); use rollout.engine=megatron otherwise")
    if importlib.util.find_spec("r1mega.rollout.vllm_engine") is None:
        raise ConfigError("rollout.engine=vllm: this r1mega build has no r1mega.rollout.vllm_engine")


def load_policy(cfg: R1Config, dims: ParallelDims, tokenizer):
    """(engine, checkpoint iteration dir) for the weights under trainer.init_from."""
    from r1mega.training.setup import build_chunks

    source = ckpt.policy_checkpoint(cfg.trainer.init_from)  # fails before any model is built
    chunks = build_chunks(cfg.model, dims, cfg.trainer.precision)
    ckpt.load_model_weights(source, chunks)
    if cfg.rollout.engine == "vllm":
        require_vllm()
    from r1mega.rollout.factory import build_engine

    return build_engine(cfg, tokenizer, dims, chunks=chunks, seed_offset=0), source


def load_prompts(cfg: R1Config) -> list[dict]:
    records, _ = load_split(cfg.data, cfg.curation.split, need_response=False)
    return records[: cfg.curation.max_prompts] if cfg.curation.max_prompts else records


def _plan(cfg: R1Config, prompts: list[dict], source: Path) -> dict:
    r = cfg.rollout
    return {"prompts": len(prompts), "chunk_prompts": cfg.curation.chunk_prompts,
            "samples_per_prompt": cfg.curation.samples_per_prompt, "checkpoint": str(source),
            "seed": cfg.trainer.seed, "template": cfg.data.template,
            "sampling": [r.temperature, r.top_p, r.top_k, r.max_tokens]}


def _provenance(cfg: R1Config, source: Path, seed: int) -> dict:
    r = cfg.rollout
    meta = ckpt.read_meta(source) or {}
    return {"stage": cfg.stage.label or cfg.stage.name, "checkpoint": str(source),
            "iteration": meta.get("iteration"), "source_stage": meta.get("stage"), "model": cfg.model.name,
            "template": cfg.data.template, "sampling": {"temperature": r.temperature, "top_p": r.top_p,
                                                        "top_k": r.top_k, "max_tokens": r.max_tokens, "seed": seed}}


def _chunk(cfg, engine, tokenizer, rewarder, judge, records, chunk_id, source) -> tuple[list, Counter]:
    k, seed = cfg.curation.samples_per_prompt, cfg.trainer.seed + chunk_id
    prompts = encode_prompts(records, tokenizer, cfg.data.template)
    engine.load_state_dict({"calls": 0})  # a fresh generator per chunk: output independent of rank and history
    gens = engine.generate([p for p in prompts for _ in range(k)], SamplingParams.from_config(cfg.rollout, seed))
    kept, counts = [], Counter()
    provenance = _provenance(cfg, source, seed)
    groups = [gens[i * k:(i + 1) * k] for i in range(len(records))]
    verdicts = verify_many(records, [[g.text.strip() for g in group] for group in groups], rewarder, judge,
                           cfg.curation.judge_sources)
    for rec, group, verdict in zip(records, groups, verdicts):
        recs, reasons = curate_prompt(rec, group, verdict, cfg.curation, provenance)
        kept += recs
        counts.update(reasons)
        counts[f"kept_source/{rec['data_source']}"] += len(recs)
        counts["prompts_with_kept"] += bool(recs)
    counts.update({"prompts": len(records), "samples": len(gens), "kept": len(kept)})
    return kept, counts


def _is_writer() -> bool:
    from megatron.core import parallel_state as ps

    return ps.get_tensor_model_parallel_rank() == 0


def generate_dataset(cfg: R1Config, dims: ParallelDims) -> dict:
    """Run the stage (see the module docstring); returns the manifest on every rank."""
    from megatron.core import parallel_state as ps

    from r1mega.rewards import RewardManager

    if cfg.rollout.engine == "vllm":
        require_vllm()
    run_dir = lifecycle.start(cfg, dims)
    tokenizer = load_tokenizer(cfg.data.tokenizer)
    prompts = load_prompts(cfg)
    engine, source = load_policy(cfg, dims, tokenizer)
    judge = make_judge(cfg.curation)
    shard_dir, size = run_dir / "shards", cfg.curation.chunk_prompts
    num_chunks = (len(prompts) + size - 1) // size
    if is_logging_rank():
        check_plan(shard_dir, _plan(cfg, prompts, source))
    _barrier()
    dp, dp_rank = dims.dp, ps.get_data_parallel_rank()
    writer = ShardWriter(shard_dir, dist.get_rank()) if _is_writer() else None
    todo = [c for c in range(num_chunks) if c not in read_progress(shard_dir)]
    _barrier()  # every rank has read the same progress before anyone writes more
    t0 = time.perf_counter()
    with RewardManager(cfg.reward) as rewarder:
        for r in range((len(todo) + dp - 1) // dp):
            mine = todo[r * dp + dp_rank] if r * dp + dp_rank < len(todo) else None
            if mine is None:  # keep the collective count equal across ranks (expert parallelism)
                engine.generate([], SamplingParams.from_config(cfg.rollout, cfg.trainer.seed))
                continue
            kept, counts = _chunk(cfg, engine, tokenizer, rewarder, judge, prompts[mine * size:(mine + 1) * size],
                                  mine, source)
            if writer is not None:
                writer.write_chunk(mine, kept, counts)
            _log(cfg, f"chunk {mine + 1}/{num_chunks}: kept {counts['kept']}/{counts['samples']}")
    _barrier()
    manifest = None
    if is_logging_rank():
        totals = merge(shard_dir, num_chunks, run_dir / cfg.curation.output)
        manifest = _manifest(cfg, totals, source, run_dir, resumed=num_chunks - len(todo),
                             wall=time.perf_counter() - t0)
        atomic_write_text(run_dir / "manifest.json", json.dumps(manifest, indent=2) + "\n")
        write_summary(run_dir, {"stage": cfg.stage.label or cfg.stage.name, "dataset": manifest})
    box = [manifest]
    if dist.get_world_size() > 1:
        dist.broadcast_object_list(box, src=0)
    lifecycle.finish()
    _check_nonempty(cfg, box[0])
    return box[0]


def _check_nonempty(cfg: R1Config, manifest: dict) -> None:
    if manifest["kept"] == 0:
        raise ValueError(f"stage={cfg.stage.name} kept no response of {manifest['samples']} (rejected: "
                         f"{manifest['rejected']}); train the policy longer, sample more (curation.samples_per_prompt, "
                         "curation.max_prompts) or relax curation.filters")


def _log(cfg: R1Config, text: str) -> None:
    if is_logging_rank():
        print(f"[{cfg.stage.name}] {text}", flush=True)


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def _manifest(cfg: R1Config, totals: Counter, source: Path, run_dir: Path, resumed: int, wall: float) -> dict:
    totals = dict(totals)
    by_source = {k.split("/", 1)[1]: totals.pop(k) for k in list(totals) if k.startswith("kept_source/")}
    main = ("prompts", "samples", "kept", "records", "prompts_with_kept")
    rejected = {k: v for k, v in sorted(totals.items()) if k not in main}
    return {
        "stage": cfg.stage.label or cfg.stage.name, "output": str(run_dir / cfg.curation.output),
        "checkpoint": str(source), **{k: totals.get(k, 0) for k in main},
        "rejected": rejected, "rejected_total": sum(rejected.values()), "kept_by_source": by_source,
        "sampling": _provenance(cfg, source, cfg.trainer.seed)["sampling"],
        "samples_per_prompt": cfg.curation.samples_per_prompt, "keep_per_prompt": cfg.curation.keep_per_prompt,
        "chunks_resumed": resumed, "wall_time_s": wall, "complete": True,
    }
