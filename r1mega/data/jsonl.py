"""Reading JSONL files line by line with errors a user can act on.

Every reader of user JSONL (benchmarks, general prompts, SFT mixes) shares the same rules:
blank lines are skipped, and a line that is not JSON stops the run with ``KEY: FILE:LINE:
invalid JSON (...)``, where KEY is the config field that named the file. What a record must
contain is the caller's business; this module only yields the parsed values.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator


def json_lines(path: Path, key: str) -> Iterator[tuple[int, Any]]:
    """``(line number, parsed value)`` for every non-blank line of ``path`` (1-based numbers)."""
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{key}: {path}:{n}: invalid JSON ({e.msg})") from None
        yield n, value
