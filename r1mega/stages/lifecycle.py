"""The life of one stage run, shared by every stage: start, resume, log, evaluate, save, finish.

``StageRun(cfg, dims)`` builds the process groups, seeds every RNG, agrees on one run
directory (written: ``config.yaml``), loads the tokenizer (checked against the model's
vocabulary) and opens the metrics logger. A training stage then calls :meth:`resume` (the
newest checkpoint of this run, else ``trainer.init_from``), iterates :meth:`steps`, logs,
evaluates and saves through the run, and ends with :meth:`finish`, which writes the summary
and plots and tears the process groups down.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Callable, Iterator, Optional

import torch
import torch.distributed as dist

from r1mega.config.schema import R1Config
from r1mega.data.tokenizer import check_vocab, load_tokenizer
from r1mega.parallel.comm import is_logging_rank
from r1mega.parallel.dims import ParallelDims
from r1mega.training import checkpoint as ckpt
from r1mega.training.metrics import MetricsLogger, write_summary
from r1mega.training.plots import plot_curves


def start(cfg: R1Config, dims: ParallelDims) -> Path:
    """Build process groups, seed everything, agree on one run dir (rank 0's); return it."""
    dims.build(cfg.parallel.backend, seed=cfg.trainer.seed)
    random.seed(cfg.trainer.seed)
    torch.manual_seed(cfg.trainer.seed)
    run_dir = [cfg.run_dir]
    if dist.get_world_size() > 1:  # ranks may have composed a different ${now}; rank 0 decides
        dist.broadcast_object_list(run_dir, src=0)
    cfg.run_dir = run_dir[0]
    path = Path(cfg.run_dir)
    if is_logging_rank():
        path.mkdir(parents=True, exist_ok=True)
        from omegaconf import OmegaConf

        (path / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.structured(cfg)))
    return path


def finish() -> None:
    """Wait for every rank, then destroy every process group (Megatron's and the default)."""
    from r1mega.parallel.dims import destroy

    if dist.is_initialized():
        dist.barrier()
    destroy()


def checkpoint_dir(cfg: R1Config) -> Path:
    return Path(cfg.trainer.checkpoint_dir or Path(cfg.run_dir) / "checkpoints")


def held_out(cfg: R1Config, engine, tokenizer, rewarder, records: list[dict]) -> dict:
    """pass@1 / cons@k / greedy on ``records`` with the ``evaluation`` sampling settings (the
    same seed every time, so two evaluations of the same weights agree); with
    ``evaluation.save_samples`` the result also holds ``samples``."""
    from megatron.core import parallel_state as ps

    from r1mega.eval.runner import evaluate

    ev = cfg.evaluation
    return evaluate(engine, tokenizer, records, cfg.data.template, rewarder, ev.k, ev.temperature, ev.top_p,
                    ev.max_tokens or cfg.rollout.max_tokens, seed=cfg.trainer.seed + 17,
                    dp_group=ps.get_data_parallel_group(), keep_samples=ev.save_samples,
                    stop_token_ids=tuple(cfg.rollout.stop_token_ids))


class StageRun:
    """One stage's run directory, tokenizer, metrics logger and checkpoints (see module doc)."""

    def __init__(self, cfg: R1Config, dims: ParallelDims):
        self.cfg, self.dims = cfg, dims
        self.dir = start(cfg, dims)
        self.label = cfg.stage.label or cfg.stage.name
        self.tokenizer = load_tokenizer(cfg.data.tokenizer)
        check_vocab(self.tokenizer, cfg.model.vocab_size)
        self.ckpt_dir = checkpoint_dir(cfg)
        self.logger = MetricsLogger(self.dir, self.label, cfg.trainer.max_steps, is_logging_rank(),
                                    cfg.trainer.progress, loggers=cfg.trainer.loggers)
        self.start_step = 0
        self.wall_start: Optional[float] = None

    def resume(self, tm) -> Optional[dict]:
        """Restore ``tm`` from this run's newest checkpoint (returns its metadata: data position,
        engine state) or, on a fresh start, load ``trainer.init_from`` into it (returns None)."""
        latest = ckpt.latest_checkpoint(self.ckpt_dir) if self.cfg.trainer.resume else None
        meta = None
        if latest is not None:
            meta = ckpt.load_checkpoint(latest, tm)
            meta["_path"] = str(latest)  # where state saved as files (see save) is read back from
            self.start_step = meta["iteration"]
        elif self.cfg.trainer.init_from:
            ckpt.init_from(self.cfg.trainer.init_from, tm)
        self.logger.resume_at(self.start_step)
        return meta

    def steps(self) -> Iterator[int]:
        """The steps left to run (``start_step + 1 .. trainer.max_steps``); the wall clock of
        the summary starts with the first."""
        self.wall_start = time.perf_counter()
        yield from range(self.start_step + 1, self.cfg.trainer.max_steps + 1)

    def log(self, step: int, metrics: dict) -> None:
        self.logger.log(step, metrics)

    def should_eval(self, step: int) -> bool:
        interval = self.cfg.trainer.eval_interval
        return bool(interval) and step % interval == 0 and step < self.cfg.trainer.max_steps

    def should_save(self, step: int) -> bool:
        interval = self.cfg.trainer.save_interval
        return step == self.cfg.trainer.max_steps or bool(interval and step % interval == 0)

    def save(self, step: int, tm, state: dict) -> None:
        """Checkpoint ``tm`` with ``state`` (data position, ...; its ``_files`` entry, name ->
        object, is written with ``torch.save`` into the iteration directory) and the tokenizer
        beside it."""
        state = dict(state)
        files = state.pop("_files", None)
        ckpt.save_checkpoint(self.ckpt_dir, step, tm, {**state, "stage": self.label},
                             keep=self.cfg.trainer.keep_checkpoints, files=files)
        if is_logging_rank():
            self.tokenizer.save_pretrained(str(self.ckpt_dir))

    def evaluate(self, tag: str, engine, rewarder, records: list[dict]) -> dict:
        """Held-out metrics (pass@1, cons@k, greedy) with the evaluation sampling settings;
        written to ``summary.json`` as ``eval_<tag>`` (and the samples, if kept)."""
        from r1mega.eval.runner import write_samples

        result = held_out(self.cfg, engine, self.tokenizer, rewarder, records)
        samples = result.pop("samples", None)
        if is_logging_rank():
            write_summary(self.dir, {f"eval_{tag}": result})
            if samples is not None:
                write_samples(self.dir / f"eval_samples_{tag}.jsonl", samples)
        return result

    def finish(self, summary: dict, curves: list[str], curve_name: Optional[str] = None,
               close: Optional[Callable[[], None]] = None) -> dict:
        """Close the logger, write ``summary`` (with stage, steps, resume point, wall time and
        the newest checkpoint) and the curves of ``curves``, then tear the groups down."""
        self.logger.close()
        wall = time.perf_counter() - self.wall_start if self.wall_start is not None else 0.0
        summary = {"stage": self.label, "steps": self.cfg.trainer.max_steps, "resumed_from": self.start_step,
                   "wall_time_s": wall, "checkpoint": str(ckpt.latest_checkpoint(self.ckpt_dir)), **summary}
        if is_logging_rank():
            write_summary(self.dir, summary)
            if self.cfg.trainer.plots:
                plot_curves(self.logger.history, curves, self.dir / f"{curve_name or self.label}_curves.png",
                            self.label)
        if close is not None:
            close()
        finish()
        return summary
