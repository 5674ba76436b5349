"""Tiny judge callables for the curation.judge hook (referenced as 'tests.pipeline.judges:NAME')."""

from __future__ import annotations


def mentions_reference(prompt: str, reference, response: str) -> bool:
    """Correct when the final summary (after </think>) contains the reference text."""
    summary = response.rsplit("</think>", 1)[-1]
    return reference is not None and str(reference).lower() in summary.lower()


def always_true(prompt: str, reference, response: str) -> bool:
    return True


def broken(prompt: str, reference, response: str) -> bool:
    raise RuntimeError("judge service is down")


NOT_CALLABLE = 3
