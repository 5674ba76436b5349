"""Hydra-style command-line overrides: ``[+|++|~]key=value``, taken apart."""

from __future__ import annotations


def override_key(override: str) -> str:
    """``'++trainer.max_steps=3'`` -> ``'trainer.max_steps'`` (``~key`` deletions too)."""
    return override.split("=", 1)[0].lstrip("+~").strip()


def split(override: str) -> tuple[str, str]:
    """``'+a.b=1'`` -> ``('a.b', '1')``; ValueError when there is no ``=``."""
    if "=" not in override:
        raise ValueError(f"override {override!r} is not of the form key=value")
    return override_key(override), override.split("=", 1)[1]
