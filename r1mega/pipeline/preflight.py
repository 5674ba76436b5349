"""Check every step's configuration before the first step runs.

A pipeline's steps are separate processes that compose their own configuration, so a bad
override would surface only when its step starts -- possibly many minutes in. Before running
anything, the orchestrator composes each stage step exactly as its process will (same
overrides, same ``conf/``) and runs the checks that process would run at start-up
(``R1Config.validate`` at the step's process count, which checks the stage's own settings
too: curation, all-scenario routing, evaluation files). The first failure stops the pipeline with
one line naming the step and the key, e.g.::

    r1mega-train: error: pipeline step r1_zero: parallel.tp=3 does not divide model.num_attention_heads=4

Steps that already finished are checked too (their overrides are unchanged, or the run stops
anyway). Files that earlier steps will write (``@{sft_data}/data.jsonl``) are not required to
exist yet.
"""

from __future__ import annotations

from r1mega.config.compose import compose, hydra_session
from r1mega.config.errors import ConfigError
from r1mega.pipeline.config import PipelineConfig


def check_step(args: list, nproc: int, name: str) -> None:
    """ConfigError naming ``name`` when the step with overrides ``args`` would not start."""
    from r1mega.config.renamed import check_overrides, explain

    try:
        check_overrides(args)
        compose(args).validate(nproc)
    except ConfigError as e:
        raise ConfigError(f"pipeline step {name}: {e}") from None
    except Exception as e:  # Hydra composition errors (unknown key, missing group option, ...)
        renamed = explain(e)
        if renamed is not None:
            raise ConfigError(f"pipeline step {name}: {renamed}") from None
        raise ConfigError(f"pipeline step {name}: {type(e).__name__}: {e}") from None


def check_all(pcfg: PipelineConfig, plan: list) -> None:
    """Check every stage step of ``plan`` ([(StepConfig, overrides)]) in order."""
    with hydra_session():
        for step, args in plan:
            if step.kind == "stage":
                check_step(args, step.nproc or pcfg.nproc, step.name)
