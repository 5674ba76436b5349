"""The bundled general (non-reasoning) prompts for the tiny all-scenario RL stage.

Deterministic and small: short writing requests about numbers, colours and objects, such as
"Write one sentence about the number 7." They carry no reference answer -- only a preference
reward model can score them -- which is exactly the role general data plays in R1's last RL
stage. Users bring their own with ``all_scenario.general_files``.
"""

from __future__ import annotations

from pathlib import Path

from r1mega.data.jsonl import json_lines

_TEMPLATES = (
    "Write one sentence about the number {n}.",
    "Describe a {c} {o} in one short sentence.",
    "Give one practical tip for keeping a {c} {o} clean.",
    "Explain in one sentence why someone would buy {n} {o}s.",
)
_COLOURS = ("red", "blue", "green", "yellow", "orange", "purple", "white", "black")
_OBJECTS = ("pencil", "map", "clock", "bicycle", "lamp", "notebook", "ladder", "kettle")


def bundled(count: int, source: str = "general") -> list[dict]:
    """The first ``count`` bundled prompts, as records ``{id, prompt, data_source}``."""
    out = []
    for i in range(count):
        template = _TEMPLATES[i % len(_TEMPLATES)]
        j = i // len(_TEMPLATES)
        c, o = _COLOURS[j % len(_COLOURS)], _OBJECTS[(j // len(_COLOURS)) % len(_OBJECTS)]
        prompt = template.format(n=j + 2, c=c, o=o)  # distinct for the first 256
        out.append({"id": f"general-{i}", "prompt": prompt, "data_source": source})
    return out


def from_files(paths: list, source: str) -> list[dict]:
    """Records from JSONL files with a 'prompt' field (and optional 'id', 'data_source')."""
    out = []
    for p in paths:
        path = Path(p).expanduser()
        if not path.is_file():
            raise ValueError(f"all_scenario.general_files: {path} does not exist")
        for line_no, raw in json_lines(path, "all_scenario.general_files"):
            if not isinstance(raw, dict) or not isinstance(raw.get("prompt"), str) or not raw["prompt"]:
                raise ValueError(f"all_scenario.general_files: {path}:{line_no}: missing or empty field 'prompt'")
            out.append({"id": raw.get("id", f"{path.stem}-{line_no}"), "prompt": raw["prompt"],
                        "data_source": raw.get("data_source") or source})
    if not out:
        raise ValueError(f"all_scenario.general_files: no prompts in {list(map(str, paths))}")
    return out


def mix(reasoning: list[dict], general: list[dict], fraction: float) -> list[dict]:
    """``reasoning`` plus general prompts (cycled) making up ``fraction`` of the result."""
    if fraction <= 0 or not general:
        return list(reasoning)
    want = round(len(reasoning) * fraction / (1 - fraction))
    return list(reasoning) + [general[i % len(general)] for i in range(max(want, 1))]
