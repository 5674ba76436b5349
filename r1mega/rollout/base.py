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
    stop_token_ids: list = field(default_factory=list)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    @classmethod
    def from_config(cls, rollout, seed: int) -> "SamplingParams":
        """The training-time sampling of a ``rollout`` config (``RolloutConfig``)."""
        return cls(rollout.temperature, rollout.top_p, rollout.top_k, rollout.max_tokens, list(rollout.stop),
                   seed=seed, stop_token_ids=[int(t) for t in rollout.stop_token_ids])


@dataclass
class Generation:
    prompt_ids: list
    token_ids: list
    logprobs: list
    finish_reason: str  # "stop" (EOS, a stop token id or a stop string) or "length"
    text: str = ""

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"

    @classmethod
    def decoded(cls, prompt: list, tokens: list, logprobs: list, stopped: bool, tokenizer) -> "Generation":
        """A finished response; its text is the decoded tokens without a final EOS."""
        eos = tokenizer.eos_token_id
        text_ids = tokens[:-1] if stopped and tokens and tokens[-1] == eos else tokens
        text = tokenizer.decode(text_ids, skip_special_tokens=False)
        return cls(prompt, tokens, logprobs, "stop" if stopped else "length", text)


class RolloutEngine(Protocol):
    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[Generation]:
        """One Generation per prompt, in order (repeat a prompt G times for a group)."""

    def update_weights(self) -> None:
        """Make the engine serve the trainer's current weights."""

    def sleep(self) -> None:
        """Free accelerator memory held for generation (no-op for the built-in engine)."""

    def wake_up(self) -> None:
        """Re-acquire what sleep() freed."""

    def state_dict(self) -> dict:
        """What makes the next samples reproducible (the count of generate calls, which seeds
        them); saved with training checkpoints."""

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` (``{"calls": 0}`` restarts the sampling sequence)."""
