"""The one place a stage gets its rollout engine (``rollout.engine``: megatron or vllm).

GRPO passes its :class:`~r1mega.training.setup.TrainModel` (the engine follows the trainer
through ``update_weights``); evaluation and the sampling stages pass loaded model chunks and
get an engine already serving them.
"""

from __future__ import annotations


def build_engine(cfg, tokenizer, dims, *, tm=None, chunks=None, seed_offset: int = 0):
    """A rollout engine for ``tm`` (training) or ``chunks`` (inference only); give exactly one."""
    if (tm is None) == (chunks is None):
        raise TypeError("build_engine needs exactly one of tm= or chunks=")
    if cfg.rollout.engine == "vllm":
        from r1mega.rollout.vllm_engine import VLLMEngine

        if tm is not None:
            return VLLMEngine(cfg, tm, tokenizer)
        return VLLMEngine.from_chunks(cfg, chunks, tokenizer)
    from r1mega.rollout.megatron_engine import MegatronEngine

    return MegatronEngine(tm.chunks if tm is not None else chunks, tokenizer, cfg.rollout.max_batch,
                          cfg.rollout.kv_cache, lockstep=dims.ep > 1, seed_offset=seed_offset)
