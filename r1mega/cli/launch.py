"""``r1mega-launch``: run ``r1mega-train`` on a Slurm cluster or on this machine, sweeps included.

    r1mega-launch cluster=slurm_h100 cluster.account=acct cluster.partition=batch cluster.nodes=32 \\
        stage=r1_zero model=deepseek_v3 parallel.pp=16 parallel.ep=16 \\
        data.seq_length=1536 trainer.micro_batch_size=1 trainer.global_batch_size=512 \\
        plan.first_stage_layers=3 plan.last_stage_layers=2 plan.recompute=full plan.rollout=sleep
    r1mega-launch cluster=slurm_h100 ... -m optim.lr=1e-5,3e-5       # one job per point
    r1mega-launch cluster=local stage=sft model=deepseek_v3_tiny parallel.dp=2 trainer.max_steps=2
    r1mega-launch summarize /lustre/r1mega/jobs/runs/<name>          # table of a sweep's results

Overrides are split three ways: ``cluster=<name>`` and ``cluster.*`` select and edit the
cluster config (``conf/cluster/``, default ``local``); ``plan.*`` feed only the preflight
planner; everything else is passed to ``r1mega-train`` unchanged (Hydra syntax, swept with
``-m``). Before submitting, every job's layout is checked against the cluster and its memory
estimated (``r1mega-plan``); ``--skip-plan`` skips the estimate, not the layout check.
``--dryrun`` prints the exact sbatch command and script of every job (or the local command)
and submits nothing.

Exit status: 0 submitted (or, for local runs, all succeeded), 1 a job does not fit or failed,
2 invalid configuration (one message naming the key).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from r1mega.config.errors import ConfigError

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="r1mega-launch",
        description="Launch r1mega-train on Slurm (NeMo-Run or plain sbatch) or locally. "
        "'r1mega-launch summarize SWEEP_DIR' tabulates a sweep.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n")[2],
    )
    p.add_argument("overrides", nargs="*", help="cluster=..., cluster.*=..., plan.*=..., and r1mega-train overrides")
    p.add_argument("-m", "--multirun", action="store_true", help="expand swept overrides, one job per point")
    p.add_argument("--dryrun", action="store_true", help="print the exact submission of every job; submit nothing")
    p.add_argument("--skip-plan", action="store_true", help="skip the memory estimate (the layout is still checked)")
    p.add_argument("--name", help="experiment name (default <stage>-<model>); names the run directories")
    p.add_argument("--exp-tag", help="suffix of the NeMo-Run experiment id <name>_<tag> (default: date-time)")
    p.add_argument("--wait", action="store_true", help="Slurm: block until the jobs end")
    p.add_argument("--verbose", action="store_true", help="show NeMo-Run's own output on stderr")
    return p


def split_overrides(overrides: list[str]) -> tuple[str, list[str], list[str]]:
    """(cluster choice, cluster.* overrides without prefix, everything else)."""
    choice, cluster, rest = "local", [], []
    for item in overrides:
        if item.startswith("cluster="):
            choice = item.split("=", 1)[1]
        elif item.startswith("cluster."):
            cluster.append(item[len("cluster."):])
        else:
            rest.append(item)
    return choice, cluster, rest


def prepare(args: argparse.Namespace):
    """Cluster, experiment name, jobs and preflight results; ValueError on bad input."""
    from r1mega.launch.cluster import load_cluster
    from r1mega.launch.jobs import build_jobs, default_name, sanitize
    from r1mega.launch.preflight import check_job
    from r1mega.launch.sweep import expand

    choice, cluster_over, job_over = split_overrides(args.overrides)
    cluster = load_cluster(choice, cluster_over)
    points = expand(job_over, args.multirun)
    name = sanitize(args.name) if args.name else default_name(job_over)
    jobs = build_jobs(cluster, name, points)
    checks = [check_job(cluster, job, plan_memory=not args.skip_plan) for job in jobs]
    return cluster, name, jobs, checks


def report_preflight(checks) -> bool:
    """Print the planner's findings to stderr; True when every job fits."""
    from r1mega.plan.report import table, verdict

    for i, check in enumerate(checks):
        if check.estimate is None:
            print(f"preflight {check.job.name}: {check.note}", file=sys.stderr)
        elif i == 0 or not check.fits:
            print(f"preflight {check.job.name}:\n{table(check.estimate)}\n", file=sys.stderr)
        else:
            print(f"preflight {check.job.name}: {verdict(check.estimate)}", file=sys.stderr)
    return all(c.fits for c in checks)


def dryrun_text(cluster, name: str, exp_id: str, jobs, verbose: bool) -> str:
    from r1mega.launch import sbatch

    via = cluster.submitter if cluster.executor == "slurm" else "nemo_run"
    out = [f"# r1mega-launch --dryrun: experiment {exp_id}, {len(jobs)} job(s), "
           f"{cluster.nodes} node(s) x {cluster.gpus_per_node} GPU(s), executor {cluster.executor} via {via}"]
    if cluster.executor == "slurm" and cluster.submitter == "sbatch":
        texts = []
        for job in jobs:
            path, script = sbatch.render(cluster, name, job)
            texts.append(f"$ sbatch {path}\n{script}")
    else:
        from r1mega.launch import nemo

        with tempfile.TemporaryDirectory(prefix="r1mega-dryrun-") as scratch:
            texts = nemo.dryrun(cluster, name, exp_id, jobs, scratch, verbose)
    for job, text in zip(jobs, texts):
        out.append(f"\n# ---- job {job.name}: {job.point.label()} -> {job.run_dir}")
        out.append(text.rstrip("\n"))
    return "\n".join(out) + "\n"


def submit_sbatch(cluster, name: str, jobs) -> dict[str, str]:
    from r1mega.launch import sbatch

    states = {}
    for job in jobs:
        path, script = sbatch.render(cluster, name, job)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(sbatch.paths(cluster, name, job)[1]).mkdir(parents=True, exist_ok=True)
        Path(path).write_text(script)
        done = subprocess.run(["sbatch", "--parsable", path], capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"sbatch {path} failed: {done.stderr.strip()}")
        states[job.name] = f"SUBMITTED ({done.stdout.strip()})"
    return states


def write_manifest(cluster, name: str, jobs) -> None:
    from r1mega.launch.summary import MANIFEST, manifest
    from r1mega.launch.sweep import is_sweep

    if len(jobs) < 2 and not is_sweep([j.point for j in jobs]) or cluster.tunnel == "ssh":
        return
    root = Path(jobs[0].run_dir).parent
    root.mkdir(parents=True, exist_ok=True)
    (root / MANIFEST).write_text(json.dumps(manifest(name, jobs), indent=2) + "\n")


def launch(args: argparse.Namespace) -> int:
    try:
        cluster, name, jobs, checks = prepare(args)
    except ConfigError as err:
        print(f"r1mega-launch: error: {err}", file=sys.stderr)
        return EXIT_INVALID
    if not report_preflight(checks):
        print("r1mega-launch: not submitted: a job does not fit (see above; --skip-plan to override)", file=sys.stderr)
        return EXIT_FAILED
    tag = (args.exp_tag or time.strftime("%Y%m%d-%H%M%S")).replace("_", "-")
    exp_id = f"{name}_{tag}"  # NeMo-Run reads the title back as the part before the last '_'
    if args.dryrun:
        sys.stdout.write(dryrun_text(cluster, name, exp_id, jobs, args.verbose))
        return EXIT_OK
    write_manifest(cluster, name, jobs)
    try:
        if cluster.executor == "slurm" and cluster.submitter == "sbatch":
            states = submit_sbatch(cluster, name, jobs)
        else:
            from r1mega.launch import nemo

            states = nemo.submit(cluster, name, exp_id, jobs, wait=args.wait, verbose=args.verbose)
    except (RuntimeError, OSError) as err:
        print(f"r1mega-launch: submission failed: {err}", file=sys.stderr)
        return EXIT_FAILED
    for job in jobs:
        print(f"{job.name}: {states.get(job.name, '?')} -> {job.run_dir}")
    failed = [n for n, s in states.items() if s.split()[0] in ("FAILED", "CANCELLED", "UNKNOWN")]
    return EXIT_FAILED if failed else EXIT_OK


def summarize_main(argv: list[str]) -> int:
    from r1mega.launch.summary import collect, markdown, write

    p = argparse.ArgumentParser(prog="r1mega-launch summarize", description="Tabulate a sweep's summary.json files.")
    p.add_argument("sweep_dir", help="the sweep's directory (<runs_dir>/<name>)")
    p.add_argument("--no-write", action="store_true", help="print only; do not write sweep_summary.{md,json}")
    args = p.parse_args(argv)
    try:
        rows = collect(args.sweep_dir)
    except ConfigError as err:
        print(f"r1mega-launch summarize: error: {err}", file=sys.stderr)
        return EXIT_INVALID
    sys.stdout.write(markdown(rows))
    if not args.no_write:
        md, js = write(args.sweep_dir, rows)
        print(f"\nwrote {md} and {js}", file=sys.stderr)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "summarize":
        return summarize_main(argv[1:])
    return launch(parser().parse_intermixed_args(argv))


if __name__ == "__main__":
    sys.exit(main())
