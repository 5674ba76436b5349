"""Hydra-style ``key=value`` overrides -> :class:`PlanConfig` and :class:`ModelConfig`.

``r1mega-plan`` takes the planner's own keys (``seq_length=8192 gpu=h200``), optionally
prefixed ``plan.``, and the model/layout keys exactly as ``r1mega-train`` takes them
(``model=deepseek_v3 model.num_layers=8 parallel.tp=2 parallel=<name>``), so a training command
line can be pasted in. The ``r1mega-train`` keys that carry batch, sequence and precision
are translated through :data:`TRAIN_KEYS`; ``r1mega-launch`` uses the same translation on
the overrides it passes through, ignoring every key the planner has no use for.

Values are parsed by OmegaConf against the typed ``PlanConfig`` schema, so ``parallel.tp=x``
fails with a message naming ``parallel.tp``.
"""

from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from r1mega.config.errors import ConfigError
from r1mega.config.overrides import split
from r1mega.models.config import ModelConfig
from r1mega.plan.config import PlanConfig
from r1mega.plan.sources import group_file, load_model, load_yaml

TRAIN_KEYS: dict[str, str] = {
    "trainer.micro_batch_size": "micro_batch_size",
    "trainer.global_batch_size": "global_batch_size",
    "data.seq_length": "seq_length",
    "trainer.precision.dtype": "dtype",
    "trainer.precision.fp8_param": "fp8_param",
}
"""r1mega-train key -> planner key. ``trainer.precision.fp8`` (null or a format) maps to
``fp8`` (false/true), and ``trainer.precision.dtype=auto`` to bf16 (what it means on a GPU).
(``r1mega-launch`` composes the whole training config instead: see r1mega.launch.trainconf.)"""


def _parse(value: str) -> Any:
    return OmegaConf.from_dotlist([f"v={value}"]).v


def _collect(overrides: list[str], strict: bool) -> tuple[dict[str, Any], dict[str, Any], str | None]:
    """Sort overrides into planner values, model values and the model choice."""
    plan: dict[str, Any] = {}
    model: dict[str, Any] = {}
    choice = None
    for item in overrides:
        if item.startswith("~"):
            continue
        key, raw = split(item)
        key = key[len("plan."):] if key.startswith("plan.") else key
        if key == "model":
            choice = raw
        elif key.startswith("model."):
            model[key[len("model."):]] = _parse(raw)
        elif key == "parallel":
            plan.update({f"parallel.{k}": v for k, v in load_yaml(group_file("parallel", raw)).items()})
        elif key == "trainer.precision.fp8":
            plan["fp8"] = _parse(raw) not in (None, False, "null", "none")
        elif key == "trainer.precision.dtype":
            plan["dtype"] = "bf16" if raw == "auto" else raw
        elif key in TRAIN_KEYS:
            plan[TRAIN_KEYS[key]] = raw
        elif key.split(".")[0] in PlanConfig.__dataclass_fields__:
            plan[key] = raw
        elif strict:
            raise ConfigError(f"unknown planner key {key!r} (see r1mega-plan --help)")
    return plan, model, choice


def plan_config(overrides: list[str], base: dict[str, Any] | None = None, strict: bool = True) -> tuple[PlanConfig, dict[str, Any], str | None]:
    """(plan, ``model.*`` values, ``model=`` choice); ``base`` holds defaults under the overrides."""
    values, model_values, choice = _collect(overrides, strict)
    schema = OmegaConf.structured(PlanConfig)
    try:
        merged = OmegaConf.merge(schema, base or {})
        for key, raw in values.items():
            OmegaConf.update(merged, key, _parse(raw) if isinstance(raw, str) else raw, merge=True)
        plan: PlanConfig = OmegaConf.to_object(merged)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "?"
        raise ConfigError(f"{key}: {str(err).splitlines()[0]}") from None
    if choice is not None:
        plan.model = choice
    return plan, model_values, choice


def plan_from_overrides(
    overrides: list[str], base: dict[str, Any] | None = None, strict: bool = True
) -> tuple[PlanConfig, ModelConfig]:
    """Build the plan and load its model (``model=`` + ``model.*`` overrides)."""
    plan, model_values, _ = plan_config(overrides, base, strict)
    return plan, load_model(plan.model, model_values)
