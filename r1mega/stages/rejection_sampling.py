"""Stage ``rejection_sampling``: R1's step 2c -- turn an RL checkpoint into SFT data.

    r1mega-train stage=rejection_sampling trainer.init_from=runs/reasoning_rl/.../checkpoints \
        curation.samples_per_prompt=8 curation.keep_per_prompt=2

Samples ``curation.samples_per_prompt`` responses per training prompt from the checkpoint,
keeps the correct ones (rule rewards; a judge callable for what rules cannot verify; with
``curation.require_correct=false`` correctness is recorded but not required -- smoke tests), drops
truncated, malformed, overlong, mixed-language and repetitive ones, de-duplicates, caps, and
writes ``<run dir>/data.jsonl`` -- records ``{prompt, response, answer, data_source,
provenance}`` that ``stage=sft data.source=files data.train_files=[...]`` trains on -- plus
``manifest.json`` with what was kept and why the rest was rejected. See
:mod:`r1mega.stages.sampled_dataset` for the mechanics (chunked, resumable, DP-sharded) and
:mod:`r1mega.stages.curation` for the decisions.
"""

from __future__ import annotations

from r1mega.config.schema import R1Config
from r1mega.parallel.dims import ParallelDims
from r1mega.stages.sampled_dataset import generate_dataset


def run(cfg: R1Config, dims: ParallelDims) -> dict:
    return generate_dataset(cfg, dims)
