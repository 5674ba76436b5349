"""The rollout-engine interface every engine implements (built-in Megatron, vLLM).

An engine turns prompt token ids into responses. Per response it returns the sampled token
ids, the log-probability of each under the *sampling* distribution after temperature (before
top-p/top-k truncation; this is what the trainer recomputes, so the two can be compared for
the rollout/trainer mismatch correction), and why it stopped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass
class SamplingParams:
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    max_tokens: int = 128
    stop: list = field(default_factory=list)
    seed: int = 0

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass
class Generation:
    prompt_ids: list
    token_ids: list
    logprobs: list
    finish_reason: str  # "stop" (EOS or stop string) or "length"
    text: str = ""

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


class RolloutEngine(Protocol):
    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[Generation]:
        """One Generation per prompt, in order (repeat a prompt G times for a group)."""

    def update_weights(self) -> None:
        """Make the engine serve the trainer's current weights."""

    def sleep(self) -> None:
        """Free accelerator memory held for generation (no-op for the built-in engine)."""

    def wake_up(self) -> None:
        """Re-acquire what sleep() freed."""
