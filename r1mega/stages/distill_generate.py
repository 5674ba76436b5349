"""Stage ``distill_generate``: a teacher writes the SFT data for a smaller student.

    r1mega-train stage=distill_generate model=deepseek_v3_tiny trainer.init_from=TEACHER_CKPT
    r1mega-train stage=sft model=tiny_dense data.source=files data.train_files=[RUN/data.jsonl]

R1's distilled models are dense students fine-tuned on the samples DeepSeek-R1 generated. The
teacher's prompts (``data`` split ``curation.split``) are cut into chunks that are dealt over
data-parallel ranks; each finished chunk is appended to the rank's shard and recorded in its
progress manifest, so the stage streams to disk and a rerun with the same run directory skips
finished chunks (``r1mega.stages.shards``). Responses go through the same filters as rejection
sampling; ``curation.require_correct`` (default true) keeps only verified ones.

The student may have another architecture (``model=tiny_dense`` after a ``deepseek_v3_tiny``
teacher): only text crosses over, re-tokenized by the student's tokenizer (the bundled one is
shared by both tiny models). ``rollout.engine=vllm`` serves large teachers; without vllm
installed it fails at start-up with the fix.
"""

from __future__ import annotations

from r1mega.config.schema import R1Config
from r1mega.parallel.dims import ParallelDims
from r1mega.stages.sampled_dataset import generate_dataset


def run(cfg: R1Config, dims: ParallelDims) -> dict:
    return generate_dataset(cfg, dims)
