"""Helper of tools/device/multigpu_grpo.sh: reward variation and the layout comparison table.

    python3 tools/device/multigpu_grpo.py vary RECORD_DIR GROUP_SIZE
    python3 tools/device/multigpu_grpo.py table ROOT > table.txt

``table`` reads ROOT/<run>/metrics.jsonl for every run directory the shell script made:
``base`` (bf16, TP=PP=EP=1, the reference), ``fp32`` (the same replay in fp32), the layout
replays and the ``*_resumed`` runs (checkpoint written at step 2 by another layout), and
prints one row per run: max |loss diff| and max relative grad-norm diff against ``base`` over
the compared steps, the bf16 tolerance, PASS/FAIL and the training throughput in tokens/s
per GPU (median over steps >= 2; step 1 pays one-off kernel warm-up). It also writes
ROOT/comparison.json.

Tolerance (bf16). Each layout computes the same bf16 model with a different order of
rounding (TP splits GEMM reductions and all-reduces bf16 partial outputs, EP/DP reorder
token and gradient sums, PP changes nothing numerically but the data exchanged). None of
these orders is more right than another: each layout's result is the exact (fp32) result
plus its own rounding error of the same size. The fp32 replay measures that size: with
e = |bf16 base - fp32| (max over steps, per metric), two layouts differ by at most about
|e_A| + |e_B| ~ 2e; we allow 3e to cover the spread of a 5-sample maximum, plus a floor of
1e-6 (absolute, loss) and 1e-5 (relative, grad norm) for metrics the two precisions happen to
share. A layout bug (a missing reduction, a wrong shard) moves the loss by the size of the
training signal itself (measured on CPU: 3e-3 loss, 1e-2 grad norm for MLA's unreduced RoPE
key gradient), far above bf16 rounding of a 5-step run.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from tests.parallel.grpo_runs import compare, read_metrics, vary_rewards

LOSS_FLOOR, GRAD_FLOOR, FACTOR = 1e-6, 1e-5, 3.0


def _throughput(rows: list[dict]) -> float:
    vals = [r["train_tokens_per_s_per_gpu"] for r in rows if r["step"] >= 2 and "train_tokens_per_s_per_gpu" in r]
    return statistics.median(vals) if vals else float("nan")


def table(root: Path) -> str:
    base = read_metrics(root / "base")
    try:
        noise = compare(read_metrics(root / "fp32"), base)
        tol_loss = max(FACTOR * noise["loss"], LOSS_FLOOR)
        tol_grad = max(FACTOR * noise["grad_norm_rel"], GRAD_FLOOR)
    except (OSError, ValueError):
        noise, tol_loss, tol_grad = None, float("nan"), float("nan")
    lines = [f"bf16 tolerance: |loss diff| <= {tol_loss:.3g}, rel grad-norm diff <= {tol_grad:.3g} "
             f"(= {FACTOR:g} x bf16-vs-fp32 at TP=PP=EP=1: {noise and {k: round(noise[k], 8) for k in ('loss', 'grad_norm_rel')}})",
             f"{'run':<16s} {'steps':>7s} {'max|dloss|':>11s} {'max rel dgn':>11s} {'verdict':>8s} {'tok/s/GPU':>10s}"]
    results = {"tolerance": {"loss": tol_loss, "grad_norm_rel": tol_grad}, "fp32_vs_bf16": noise, "runs": {}}
    runs = sorted(p.parent.name for p in root.glob("*/metrics.jsonl"))
    for name in ["base", "fp32"] + [r for r in runs if r not in ("base", "fp32", "record_run")]:
        try:
            rows = read_metrics(root / name)
            steps = [r["step"] for r in rows]
            d = compare(rows, base, steps)
        except (OSError, ValueError, KeyError) as e:
            lines.append(f"{name:<16s} {'-':>7s} {'missing or failed: ' + type(e).__name__:>40s}")
            results["runs"][name] = {"error": str(e)}
            continue
        ok = d["loss"] <= tol_loss and d["grad_norm_rel"] <= tol_grad
        verdict = "PASS" if ok else ("no-tol" if noise is None else "FAIL")
        verdict = {"base": "ref", "fp32": "noise"}.get(name, verdict)
        span = f"{min(steps)}-{max(steps)}"
        tput = _throughput(rows)
        lines.append(f"{name:<16s} {span:>7s} {d['loss']:11.3g} {d['grad_norm_rel']:11.3g} {verdict:>8s} {tput:10.0f}")
        results["runs"][name] = {**d, "steps": steps, "verdict": verdict, "train_tokens_per_s_per_gpu": tput}
    (root / "comparison.json").write_text(json.dumps(results, indent=1, default=str))
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    if len(argv) == 3 and argv[0] == "vary":
        print(f"rewrote rewards of {vary_rewards(Path(argv[1]), int(argv[2]))} step files")
    elif len(argv) == 2 and argv[0] == "table":
        print(table(Path(argv[1])))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
