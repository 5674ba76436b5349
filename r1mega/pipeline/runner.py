"""The orchestrator: run a pipeline's steps in order, skipping finished ones, then report.

    r1mega-train                          # the default pipeline, tiny_r1, in runs/pipeline/tiny_r1
    r1mega-train pipeline=r1 model=...    # another pipeline; extra overrides reach every step
    r1mega-train hydra.run.dir=runs/try2 pipeline.vars.cold_start_steps=300

Each stage step is a separate ``r1mega-train`` process (torchrun with ``pipeline.nproc`` > 1;
forked from this one with ``pipeline.launcher=fork``, r1mega/pipeline/forked.py)
that composes its own configuration and writes its own run directory
``<pipeline dir>/<step>``; this process only starts them, waits, and writes
``<step>/DONE.json`` when one succeeds. Rerunning the same command after a crash or a kill
skips every step with a DONE.json and restarts the interrupted one in its directory, where
the stage resumes from its own checkpoints or chunk manifests. A failing step stops the
pipeline with its exit code.

At the end: ``summary.json`` (per-step status and time, and ``eval``: one entry per model of
``pipeline.report``), ``results.md`` with the table (also printed) and ``pipeline_curves.png``.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from r1mega import lifeline
from r1mega.config.errors import ConfigError
from r1mega.pipeline import forked, preflight, report, state, steps
from r1mega.pipeline.config import PipelineConfig, StepConfig
from r1mega.pipeline.mixing import mix_sft
from r1mega.training.ckpt_layout import atomic_write_text


def _say(text: str) -> None:
    print(f"[pipeline] {text}", flush=True)


def fingerprint(pcfg: PipelineConfig, step: StepConfig, pipeline_dir: Path, cli: list) -> list:
    if step.kind == "mix":
        return [*steps.mix_inputs(pcfg, step, pipeline_dir), *map(str, pcfg.extra_sft_files),
                f"extra_sft_ratio={pcfg.extra_sft_ratio}", f"min_records={step.min_records}"]
    return steps.stage_overrides(pcfg, step, pipeline_dir, cli)


def run_step(pcfg: PipelineConfig, step: StepConfig, pipeline_dir: Path, args: list, seed: int) -> None:
    step_dir = pipeline_dir / step.name
    if step.kind == "mix":
        manifest = mix_sft(steps.mix_inputs(pcfg, step, pipeline_dir), list(pcfg.extra_sft_files),
                           pcfg.extra_sft_ratio, step_dir, seed, step.min_records)
        _say(f"{step.name}: {manifest['reasoning']} reasoning + {manifest['extra']} non-reasoning records"
             + (f", repeated to {manifest['records']}" if manifest["repeated_to_min_records"] else ""))
        return
    nproc = step.nproc or pcfg.nproc
    on_start = lifeline.preexec()  # the step dies with the orchestrator, SIGKILL included
    try:
        if pcfg.launcher == "fork":
            argv = steps.stage_argv(args, step_dir)
            _say(f"fork {nproc} x r1mega-train {' '.join(argv)}")
            code = forked.run(argv, nproc, steps.free_port(), on_start)
        else:
            cmd = steps.command(args, step_dir, nproc)
            _say(" ".join(cmd))
            code = subprocess.run(cmd, preexec_fn=on_start).returncode
    except KeyboardInterrupt:
        _say(f"interrupted during step {step.name!r}; rerun the same command to resume")
        raise SystemExit(130) from None
    if code != 0:
        _say(f"step {step.name!r} failed with exit code {code}; its run directory is {step_dir}. "
             "Rerun the same command to resume from there.")
        raise SystemExit(code if code > 0 else 1)


def run_pipeline(cfg, cli_overrides: list) -> dict:
    """Run ``cfg.pipeline`` in ``cfg.run_dir``; returns the pipeline summary."""
    pcfg: PipelineConfig = cfg.pipeline
    pcfg.validate()
    if int(os.environ.get("WORLD_SIZE", 1)) > 1:
        raise ConfigError(f"run pipeline={pcfg.name} as one process; pipeline.nproc sets the processes of each step")
    pipeline_dir = Path(cfg.run_dir).resolve()
    pipeline_dir.mkdir(parents=True, exist_ok=True)
    cli = steps.forwarded(cli_overrides)
    plan = [(s, fingerprint(pcfg, s, pipeline_dir, cli)) for s in pcfg.steps]  # bad references fail here
    preflight.check_all(pcfg, plan)  # a bad setting of any step stops the run before anything starts
    for name, keys in steps.shadowed(pcfg, cli).items():
        _say(f"note: step {name} sets {', '.join(keys)} itself, so the command line's value does not apply "
             "there (retune it through pipeline.vars)")
    status: dict = {}
    t0 = time.perf_counter()
    if pcfg.launcher == "fork":
        forked.warm_up()
    for i, (step, args) in enumerate(plan, start=1):
        step_dir = pipeline_dir / step.name
        done = state.read_done(step_dir)
        if done is not None:
            state.check_unchanged(step.name, done, args)
            _say(f"step {i}/{len(plan)} {step.name}: done earlier, skipped")
            status[step.name] = {"status": "skipped", "wall_time_s": done.get("wall_time_s")}
        else:
            _say(f"step {i}/{len(plan)} {step.name} ({step.kind})")
            t = time.perf_counter()
            run_step(pcfg, step, pipeline_dir, args, cfg.trainer.seed)
            record = state.mark_done(step_dir, step.name, step.kind, args, time.perf_counter() - t)
            status[step.name] = {"status": "ran", "wall_time_s": record["wall_time_s"]}
        if step.name == pcfg.stop_after:
            _say(f"stopping after {step.name} (pipeline.stop_after)")
            break
    summary = {"pipeline": pcfg.name, "dir": str(pipeline_dir), "steps": status,
               "wall_time_s": time.perf_counter() - t0, "complete": pcfg.stop_after is None}
    if pcfg.stop_after is None:
        summary.update(_report(pcfg, pipeline_dir))
    atomic_write_text(pipeline_dir / "summary.json", json.dumps(summary, indent=2, default=str) + "\n")
    _say(f"finished in {summary['wall_time_s']:.0f} s; summary in {pipeline_dir / 'summary.json'}")
    return summary


def _report(pcfg: PipelineConfig, pipeline_dir: Path) -> dict:
    evals = report.collect(pipeline_dir, dict(pcfg.report))
    text = report.table(evals)
    atomic_write_text(pipeline_dir / "results.md", f"# pipeline {pcfg.name}: held-out evaluation\n\n{text}\n")
    print(text, flush=True)
    png = report.plot(pipeline_dir, [s.name for s in pcfg.steps], evals, pipeline_dir / "pipeline_curves.png")
    return {"eval": evals, "plot": str(png) if png else None}
