"""Alternating A/B timing of ``bench_convert.py``'s ``read`` and ``import`` phases for two source
trees on one checkpoint (not a unit test).

On a shared machine one run of each is noise-bound; this runs the two trees' phases in turn,
``--rounds`` times, each in a fresh interpreter (``bench_convert.py --phase``, with
``PYTHONPATH`` set to the tree), on the same random Llama checkpoint, and prints the medians.
Trees are plain exports, e.g. ``git archive REV r1mega tools | tar -x -C /tmp/a``.

Usage: ``env OMP_NUM_THREADS=1 python tools/bench/ab_import.py --trees /tmp/a /tmp/b [--gb 1.0 --rounds 3]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path


def phase(tree: Path, name: str, *paths: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE")}
    env["PYTHONPATH"] = str(tree)
    proc = subprocess.run(["nice", "-n", "19", sys.executable, str(tree / "tools/bench/bench_convert.py"),
                           "--phase", name, *map(str, paths)], capture_output=True, text=True, env=env)
    if proc.returncode:
        raise SystemExit(f"{tree}: phase {name} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trees", nargs=2, type=Path, required=True)
    ap.add_argument("--gb", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/r1mega-bench-ab"))
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_convert

    shutil.rmtree(args.dir, ignore_errors=True)
    args.dir.mkdir(parents=True)
    try:
        facts = bench_convert.generate(args.dir / "hf", args.gb)
        gb = facts["bytes"] / 1e9
        print(f"checkpoint: {gb:.2f} GB bf16, {facts['layers']} layers, {facts['shards']} shards", flush=True)
        runs: dict = {}
        for i in range(args.rounds):
            for tree in args.trees:
                for name, paths in (("read", [args.dir / "hf"]), ("import", [args.dir / "hf", args.dir / "meg"])):
                    r = phase(tree, name, *paths)
                    shutil.rmtree(args.dir / "meg", ignore_errors=True)
                    runs.setdefault((name, str(tree)), []).append(r)
                    print(f"round {i} {tree} {name}: {r['seconds']:.2f} s wall, {r['cpu_seconds']:.2f} CPU s, "
                          f"load {os.getloadavg()[0]:.1f}", flush=True)
        for (name, tree), rs in runs.items():
            wall = sorted(r["seconds"] for r in rs)[len(rs) // 2]
            cpu = sorted(r["cpu_seconds"] for r in rs)[len(rs) // 2]
            print(f"{name:7s} {tree}: median {wall:.2f} s wall ({gb / wall:.2f} GB/s), "
                  f"{cpu:.2f} CPU s ({gb / cpu:.2f} GB/CPU-s)")
    finally:
        shutil.rmtree(args.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
