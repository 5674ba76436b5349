"""Launching GRPO runs at a layout and comparing their per-step metrics (tests and the
multi-GPU device script share this).

A layout comparison needs (1) the same initial weights and (2) the same rollouts at every
layout: a recording run writes both (``rl.record_dir``: step files and ``init/``), every
other run replays them (``rl.replay_dir`` + ``trainer.init_from``). An untrained model
earns no reward, so every advantage would be zero and the policy-gradient term would vanish;
:func:`vary_rewards` rewrites the recorded rewards with a fixed pseudo-random pattern (both
values in every group) so that the comparison covers the whole GRPO loss.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

# Keys compared between layouts: the training loss and the gradient norm of each optimizer
# step (averaged over the RL step's updates), plus quantities computed on the way.
COMPARED = ("loss", "grad_norm", "actor_pg_loss", "kl_ref", "entropy", "actor_ratio_mean")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train(args: list, run_dir: Path, nproc: int = 1, timeout: float = 900, env: dict | None = None) -> list[dict]:
    """``r1mega.cli.train`` with ``args`` on ``nproc`` processes (torchrun); returns metrics rows."""
    clean = {k: v for k, v in os.environ.items()
             if k not in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK")}
    clean.update(PYTHONWARNINGS="ignore", OMP_NUM_THREADS=clean.get("OMP_NUM_THREADS", "1"), **(env or {}))
    cmd = [sys.executable, "-m", "r1mega.cli.train"]
    if nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
               "--master-port", str(free_port()), "-m", "r1mega.cli.train"]
    out = subprocess.run([*cmd, *args, f"hydra.run.dir={run_dir}"], capture_output=True, text=True,
                         env=clean, timeout=timeout)
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    (Path(run_dir) / "launcher.log").write_text(out.stdout + out.stderr)
    if out.returncode != 0:
        raise RuntimeError(f"training at {args[-6:]} failed (rc={out.returncode}):\n{out.stderr[-4000:]}")
    return read_metrics(run_dir)


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def vary_rewards(record_dir: Path, group_size: int, seed: int = 0) -> int:
    """Rewrite every recorded step's rewards to 0/1 with both values in every group; returns
    the number of step files rewritten (atomically)."""
    files = sorted(Path(record_dir).glob("step_*.json"))
    for f in files:
        rec = json.loads(f.read_text())
        g = torch.Generator().manual_seed(seed * 7919 + rec["step"])
        n = len(rec["rewards"])
        rewards = torch.randint(0, 2, (n,), generator=g).float()
        rewards = rewards.view(-1, group_size)
        rewards[:, 0], rewards[:, 1] = 1.0, 0.0  # no group without signal
        rec["rewards"] = rewards.flatten().tolist()
        tmp = f.with_name(f.name + ".tmp")
        tmp.write_text(json.dumps(rec))
        os.replace(tmp, f)
    return len(files)


def compare(rows: list[dict], ref: list[dict], steps: list[int] | None = None) -> dict:
    """Per compared key, the largest |difference| over the steps (and rel. for grad_norm)."""
    by_step = {r["step"]: r for r in ref}
    got = {r["step"]: r for r in rows}
    steps = steps or sorted(by_step)
    missing = [s for s in steps if s not in got or s not in by_step]
    if missing:
        raise ValueError(f"steps {missing} are missing from one of the runs")
    out = {}
    for key in COMPARED:
        diffs = [abs(got[s][key] - by_step[s][key]) for s in steps if key in by_step[s]]
        out[key] = max(diffs) if diffs else math.nan
    out["grad_norm_rel"] = max(abs(got[s]["grad_norm"] / by_step[s]["grad_norm"] - 1) for s in steps)
    return out
