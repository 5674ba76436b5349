"""``r1mega-reward``: score a JSONL file of completions with the rule-based rewards.

Each input line is a JSON object with ``completion``, ``data_source`` and the ground truth
(``answer`` for maths sources, ``tests`` for code sources). Each output line is the input plus
``rewards`` (component -> value) and ``reward`` (weighted total). A line that cannot be scored
-- invalid JSON, a missing field, an unknown data source -- gets ``"reward": null`` and an
``error`` such as ``"line 7: missing field 'answer'"``; the rest of the file is unaffected.

The output appears atomically (written to a temporary file next to it, then renamed), and a
one-line summary goes to stderr. Exit status: 0 when the file was processed (even with bad
lines), 2 for usage errors, 1 when the input cannot be read or the output not written.

Examples::

    r1mega-reward samples.jsonl --output scored.jsonl
    r1mega-reward samples.jsonl -o scored.jsonl --reward math_accuracy --reward language --workers 8
    r1mega-reward samples.jsonl -o scored.jsonl --config rewards.yaml --timeout 5
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from typing import Any, Iterator, TextIO

from r1mega.config.errors import ConfigError
from r1mega.rewards import registry
from r1mega.rewards.config import ComponentConfig, RewardConfig, SourceRewardConfig
from r1mega.rewards.manager import RewardManager

_TIMED_COMPONENTS = ("math_accuracy", "code_accuracy")


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(prog="r1mega-reward", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", help="input JSONL file")
    parser.add_argument("--output", "-o", required=True, help="output JSONL file (written atomically)")
    parser.add_argument("--reward", action="append", metavar="NAME",
                        help=f"compute only these components (repeatable; known: {', '.join(registry.names())}). "
                             "A component not configured for a source is added with weight 1 and default options.")
    parser.add_argument("--workers", type=int, metavar="N", help="worker processes (0: in-process, for debugging)")
    parser.add_argument("--timeout", type=float, metavar="S",
                        help="time limit in seconds per maths verification and per code test run")
    parser.add_argument("--config", metavar="FILE", help="RewardConfig as JSON or YAML (default: built-in recipe)")
    parser.add_argument("--batch-size", type=int, default=1024, metavar="N", help="lines scored per batch")
    return parser


def _load_config_file(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        if path.endswith((".yaml", ".yml")):
            import yaml

            return yaml.safe_load(text) or {}
        return json.loads(text)
    except Exception as exc:  # JSON and YAML syntax errors alike
        raise ConfigError(f"cannot parse {path}: {exc}") from None


def _select(recipe: SourceRewardConfig, names: list[str], timeout: float | None) -> SourceRewardConfig:
    by_name = {c.name: c for c in recipe.components}
    chosen = [by_name.get(n) or ComponentConfig(name=n) for n in names] if names else list(recipe.components)
    if timeout is not None:
        chosen = [ComponentConfig(c.name, c.weight, c.key, {**c.options, "timeout_s": timeout})
                  if c.name in _TIMED_COMPONENTS else c for c in chosen]
    return SourceRewardConfig(chosen)


def make_config(args: argparse.Namespace) -> RewardConfig:
    """RewardConfig from ``--config``, then ``--reward`` / ``--timeout`` / ``--workers`` overrides."""
    base = RewardConfig.from_dict(_load_config_file(args.config)) if args.config else RewardConfig()
    for name in args.reward or []:
        registry.component_class(name, "--reward")
    sources = {s: _select(r, args.reward or [], args.timeout) for s, r in base.sources.items()}
    workers = args.workers if args.workers is not None else base.num_workers
    return RewardConfig(sources=sources, num_workers=workers, start_method=base.start_method,
                        worker_memory_mb=base.worker_memory_mb, cache_size=base.cache_size,
                        drop_privileges=base.drop_privileges)


def _parse_line(number: int, line: str) -> tuple[dict | None, str | None]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        return None, f"line {number}: invalid JSON ({exc.msg} at column {exc.colno})"
    if not isinstance(record, dict):
        return None, f"line {number}: expected a JSON object, got {type(record).__name__}"
    return record, None


def _batches(stream: TextIO, size: int) -> Iterator[list[tuple[int, dict | None, str | None]]]:
    batch = []
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        batch.append((number, *_parse_line(number, line)))
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


class _Summary:
    def __init__(self) -> None:
        self.lines = self.errors = 0
        self.rewards: list[float] = []

    def line(self, number: int, record: dict | None, result, error: str | None) -> dict:
        self.lines += 1
        if record is None or (result.error is not None and not result.components):
            self.errors += 1
            message = error or f"line {number}: {result.error}"
            return {**(record or {"line": number}), "rewards": {}, "reward": None, "error": message}
        self.rewards.append(result.reward)
        out = {**record, "rewards": result.components, "reward": result.reward}
        if result.error:
            self.errors += 1
            out["error"] = f"line {number}: {result.error}"
        return out

    def text(self, output: str) -> str:
        mean = sum(self.rewards) / len(self.rewards) if self.rewards else float("nan")
        return (f"r1mega-reward: {self.lines} lines, {len(self.rewards)} scored, mean reward {mean:.4f}, "
                f"{self.errors} with errors -> {output}")


def score_file(manager: RewardManager, src: TextIO, dst: TextIO, batch_size: int) -> _Summary:
    """Score every line of ``src`` into ``dst``; returns the summary counters."""
    summary = _Summary()
    for batch in _batches(src, batch_size):
        records = [(n, r, e) for n, r, e in batch if r is not None]
        results = iter(manager.score_batch([r for _, r, _ in records]))
        for number, record, error in batch:
            result = next(results) if record is not None else None
            row = summary.line(number, record, result, error)
            dst.write(json.dumps(row, ensure_ascii=False) + "\n")
    return summary


def _atomic_output(path: str):
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".r1mega-reward-", suffix=".tmp", dir=directory)
    return os.fdopen(fd, "w", encoding="utf-8"), tmp


def main(argv: list[str] | None = None) -> int:
    """Console entry point."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error("--batch-size must be >= 1")
    try:
        config = make_config(args)
    except (ConfigError, OSError) as exc:
        parser.error(str(exc))
    try:
        src = open(args.input, encoding="utf-8")
    except OSError as exc:
        print(f"r1mega-reward: cannot read {args.input}: {exc}", file=sys.stderr)
        return 1
    try:
        dst, tmp = _atomic_output(args.output)
    except OSError as exc:
        src.close()
        print(f"r1mega-reward: cannot write next to {args.output}: {exc}", file=sys.stderr)
        return 1
    try:
        with src, dst, RewardManager(config) as manager:
            summary = score_file(manager, src, dst, args.batch_size)
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(tmp, args.output)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    print(summary.text(args.output), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
