"""The whole run's configuration as one typed tree, and the one place it is validated.

Hydra composes YAML from ``conf/`` onto this schema (registered in :mod:`r1mega.config.store`),
so an unknown key or a wrong type fails while composing, naming the key. After every override
is applied, :func:`to_config` converts the ``DictConfig`` to these dataclasses and
:meth:`R1Config.validate` checks cross-field constraints once; no code below the entry point
ever sees a ``DictConfig``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from r1mega.config.errors import ConfigError
from r1mega.data.config import DataConfig
from r1mega.data.curation import CurationConfig
from r1mega.eval.benchmarks import EvalConfig
from r1mega.models.config import ModelConfig
from r1mega.parallel.config import ParallelConfig
from r1mega.parallel.dims import ParallelDims
from r1mega.pipeline.config import PipelineConfig
from r1mega.rewards.config import RewardConfig
from r1mega.rl.config import GRPOConfig
from r1mega.config.all_scenario import AllScenarioConfig
from r1mega.rollout.config import RolloutConfig
from r1mega.training.config import OptimConfig, TrainerConfig

RL_STAGES = ("r1_zero", "reasoning_rl", "all_scenario_rl")
CURATION_STAGES = ("rejection_sampling", "distill_generate")
STAGES = (
    "sft",
    "r1_zero",
    "reasoning_rl",
    "rejection_sampling",
    "distill_generate",
    "all_scenario_rl",
    "eval",
)


@dataclass
class StageConfig:
    """Which stage of the recipe this run executes."""

    name: str = "sft"
    """One of sft, r1_zero, reasoning_rl, rejection_sampling, distill_generate,
    all_scenario_rl, eval."""
    label: Optional[str] = None
    """Free-form label recorded in metrics (e.g. cold_start, distill); defaults to name."""


@dataclass
class R1Config:
    """Root of the configuration tree (``r1mega-train --cfg job`` prints it resolved)."""

    stage: StageConfig = field(default_factory=StageConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    rl: GRPOConfig = field(default_factory=GRPOConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    curation: CurationConfig = field(default_factory=CurationConfig)
    """stage=rejection_sampling / distill_generate: sampling, verification, filters, output."""
    all_scenario: AllScenarioConfig = field(default_factory=AllScenarioConfig)
    """stage=all_scenario_rl: general prompts, reward routing, the preference reward model."""
    evaluation: EvalConfig = field(default_factory=EvalConfig)
    """stage=eval: benchmark files (AIME / MATH-500 style) or the data's test split."""
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    """pipeline=NAME runs a chain of stages (r1mega.pipeline) instead of one stage."""
    run_dir: Optional[str] = None
    """Output directory; filled from hydra.run.dir at start-up."""

    def validate(self, world_size: int) -> ParallelDims:
        """Check everything once; returns the resolved parallel layout."""
        if self.stage.name not in STAGES:
            raise ConfigError(f"stage.name={self.stage.name!r} is not one of {STAGES}")
        self.model.validate()
        self.data.validate()
        self.optim.validate()
        self.trainer.validate()
        if self.parallel.backend not in ("auto", "nccl", "gloo"):
            raise ConfigError(f"parallel.backend={self.parallel.backend!r} is not one of auto, nccl, gloo")
        if self.trainer.micro_batch_size > self.trainer.global_batch_size:
            raise ConfigError(
                f"trainer.micro_batch_size={self.trainer.micro_batch_size} exceeds "
                f"trainer.global_batch_size={self.trainer.global_batch_size}"
            )
        if self.data.seq_length > self.model.max_position_embeddings:
            raise ConfigError(
                f"data.seq_length={self.data.seq_length} exceeds model.max_position_embeddings="
                f"{self.model.max_position_embeddings}"
            )
        dims = ParallelDims.resolve(
            self.parallel,
            world_size,
            self.model,
            self.trainer.global_batch_size,
            self.trainer.micro_batch_size,
        )
        self._validate_stage(dims)
        return dims

    def _validate_stage(self, dims: ParallelDims) -> None:
        """The settings only some stages read: sampling, evaluation, curation, all-scenario RL."""
        stage = self.stage.name
        if stage in RL_STAGES or stage in CURATION_STAGES or stage == "eval":
            self.rollout.validate()
        if stage in RL_STAGES:
            self.evaluation.validate_sampling()  # eval_before / eval_after on the test split
            self._validate_rl(dims)
        if stage == "all_scenario_rl":
            self.all_scenario.validate()
        if stage in CURATION_STAGES:
            self.curation.validate()
            if not self.trainer.init_from:
                raise ConfigError(f"trainer.init_from must name the checkpoint to sample from (stage={stage})")
        if stage == "eval":
            self.evaluation.validate()

    def _validate_rl(self, dims: ParallelDims) -> None:
        self.rl.validate()
        gbs, g, nmini = self.trainer.global_batch_size, self.rl.group_size, self.rl.num_minibatches
        if gbs % (g * dims.dp):
            raise ConfigError(
                f"trainer.global_batch_size={gbs} (responses per RL step) must be a multiple of "
                f"rl.group_size*dp = {g}*{dims.dp}: every DP rank holds whole groups"
            )
        per_rank_mini = gbs // dims.dp // nmini
        if (gbs // dims.dp) % nmini or per_rank_mini % self.trainer.micro_batch_size:
            raise ConfigError(
                f"trainer.global_batch_size={gbs} / dp={dims.dp} / rl.num_minibatches={nmini} must be a "
                f"multiple of trainer.micro_batch_size={self.trainer.micro_batch_size}"
            )
        if self.rl.dynamic_sampling and (self.rl.record_dir or self.rl.replay_dir):
            raise ConfigError(
                "rl.dynamic_sampling=true cannot be combined with rl.record_dir / rl.replay_dir: "
                "a recording holds one prompt batch per step, dynamic sampling draws several"
            )
        if self.rollout.engine == "megatron" and dims.vpp is not None:
            raise ConfigError(
                f"rollout.engine=megatron does not decode with virtual pipeline stages (parallel.vpp={dims.vpp}); "
                "unset parallel.vpp or use rollout.engine=vllm"
            )


def to_config(cfg) -> R1Config:
    """DictConfig (after all overrides) -> R1Config dataclasses; ConfigError when a value is
    missing or an interpolation does not resolve."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        obj = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as e:
        raise ConfigError(" ".join(str(e).split())) from e
    assert isinstance(obj, R1Config), type(obj)
    return obj
