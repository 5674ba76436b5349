"""Configuration of stage=all_scenario_rl: reward routing and the preference reward model.

R1's last RL stage trains on a mix: reasoning prompts keep their rule rewards, general prompts
(writing, QA, ...) are scored by preference reward models. ``all_scenario.routing`` maps each
``data_source`` to ``rules`` or ``reward_model``; sources it does not list use ``rules``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional

from r1mega.config.errors import ConfigError

ROUTES = ("rules", "reward_model")
SCOPES = ("summary", "completion")


@dataclass
class RewardModelConfig:
    """A local Hugging Face AutoModelForSequenceClassification with one output (num_labels=1)."""

    path: Optional[str] = None
    """Directory with the model and its tokenizer; None builds a tiny *random* one in
    <run dir>/reward_model on first use (mechanics only: its rewards mean nothing)."""
    scope: str = "summary"
    """What it judges: 'summary' (text after </think>, R1's helpfulness RM) or 'completion'
    (the whole response, as R1's harmlessness RM)."""
    max_length: int = 512
    """Tokens of (prompt, response) given to the model; longer inputs keep their start."""
    batch_size: int = 16
    """Responses scored per forward pass."""
    scale: float = 1.0
    """The reward is scale * model output."""
    no_summary_reward: float = -1.0
    """Reward (before format) of a response without </think> when scope=summary."""

    def validate(self, prefix: str = "all_scenario.reward_model") -> None:
        if self.scope not in SCOPES:
            raise ConfigError(f"{prefix}.scope={self.scope!r} is not one of {SCOPES}")
        if self.max_length < 8 or self.batch_size < 1:
            raise ConfigError(f"{prefix}.max_length must be >= 8 and {prefix}.batch_size >= 1")
        if self.path and not Path(self.path).expanduser().is_dir():
            raise ConfigError(f"{prefix}.path={self.path!r} is not a directory")


@dataclass
class AllScenarioConfig:
    """The prompt mix and reward routing of stage=all_scenario_rl."""

    routing: Dict[str, str] = field(default_factory=lambda: {"general": "reward_model"})
    """data_source -> 'rules' | 'reward_model'; unlisted sources use 'rules'."""
    general_source: str = "general"
    """data_source given to general prompts (bundled ones, or files records without one)."""
    general_files: list = field(default_factory=list)
    """JSONL files of general prompts (field 'prompt'); empty = the bundled set."""
    general_prompts: int = 64
    """Size of the bundled general prompt set (used when general_files is empty)."""
    general_fraction: float = 0.25
    """Share of training prompts that are general (general prompts repeat to reach it)."""
    format_weight: float = 1.0
    """Weight of the think-format check added to reward-model rewards (0 = RM only)."""
    reward_model: RewardModelConfig = field(default_factory=RewardModelConfig)
    """The preference reward model."""

    def validate(self, prefix: str = "all_scenario") -> None:
        for source, route in self.routing.items():
            if route not in ROUTES:
                raise ConfigError(f"{prefix}.routing.{source}={route!r} is not one of {ROUTES}")
        if not 0 <= self.general_fraction < 1:
            raise ConfigError(f"{prefix}.general_fraction={self.general_fraction} must be in [0, 1)")
        if self.general_prompts < 1:
            raise ConfigError(f"{prefix}.general_prompts must be >= 1, got {self.general_prompts}")
        if self.general_fraction > 0 and self.routing.get(self.general_source, "rules") != "reward_model":
            raise ConfigError(f"{prefix}.routing has no 'reward_model' route for {prefix}.general_source="
                             f"{self.general_source!r}: general prompts have no rule reward")
        self.reward_model.validate(f"{prefix}.reward_model")
