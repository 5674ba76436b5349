"""``r1mega-plan``: will this model, layout and batch fit in GPU memory? Answer before queueing.

    r1mega-plan model=deepseek_v3 nodes=32 gpus_per_node=8 gpu=h100 \\
        parallel.pp=16 parallel.ep=16 first_stage_layers=3 last_stage_layers=2 \\
        seq_length=1536 global_batch_size=512 recompute=full rollout=sleep

Prints the per-GPU estimate of the first, busiest and last pipeline stage and exits 0 when
the busiest GPU fits, 1 when it does not, 2 when the inputs are invalid (one message naming
the key, no traceback). ``--json`` prints the full record instead. Keys: ``--help``.
"""

from __future__ import annotations

import argparse
import json
import sys

from r1mega.config.errors import ConfigError
from r1mega.plan.config import PlanConfig, field_docs

EXIT_FITS, EXIT_DOES_NOT_FIT, EXIT_INVALID = 0, 1, 2


def _epilog() -> str:
    lines = ["planner keys (also accepted with a 'plan.' prefix):"]
    for key, doc in field_docs(PlanConfig).items():
        lines.append(f"  {key:<32} {doc}")
    lines.append("  parallel.<tp|pp|vpp|ep|etp|cp|dp|sequence_parallel|distributed_optimizer>")
    lines.append("  model.<any ModelConfig key>        override one architecture field")
    lines.append("r1mega-train keys understood: trainer.micro_batch_size, trainer.global_batch_size,")
    lines.append("  data.seq_length, trainer.precision.{dtype,fp8,fp8_param}")
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="r1mega-plan",
        description="Estimate per-GPU memory of an r1mega training layout before submitting it.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("overrides", nargs="*", help="key=value overrides (planner and r1mega-train keys)")
    p.add_argument("--json", action="store_true", help="print the full estimate as JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        from r1mega.plan.estimate import estimate
        from r1mega.plan.overrides import plan_from_overrides
        from r1mega.plan.report import as_dict, table

        plan, model = plan_from_overrides(args.overrides)
        est = estimate(plan, model)
    except ConfigError as err:
        print(f"r1mega-plan: error: {err}", file=sys.stderr)
        return EXIT_INVALID
    print(json.dumps(as_dict(est), indent=2) if args.json else table(est))
    return EXIT_FITS if est.fits else EXIT_DOES_NOT_FIT


if __name__ == "__main__":
    sys.exit(main())
