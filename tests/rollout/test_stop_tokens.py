"""``rollout.stop_token_ids`` end a response in the built-in engine as EOS does: the response
keeps the stop token, stops there, and reports finish_reason "stop"."""

from __future__ import annotations

from tests.foundation.dist_utils import run_ranks


def _decode_twice(stop_after: int):
    """Sample once freely, then again from the same RNG state with the token sampled at position
    ``stop_after`` of the first response declared a stop token."""
    from omegaconf import OmegaConf

    from r1mega.config.paths import conf_dir
    from r1mega.data.tokenizer import load_tokenizer
    from r1mega.models.config import ModelConfig
    from r1mega.models.precision import PrecisionConfig
    from r1mega.parallel.config import ParallelConfig
    from r1mega.parallel.dims import ParallelDims
    from r1mega.rollout.base import SamplingParams
    from r1mega.rollout.megatron_engine import MegatronEngine
    from r1mega.training.setup import build_chunks

    cfg = ModelConfig(**OmegaConf.to_container(OmegaConf.load(conf_dir() / "model" / "tiny_dense.yaml")))
    dims = ParallelDims.resolve(ParallelConfig(), 1, cfg)
    dims.build("gloo", seed=7)
    engine = MegatronEngine(build_chunks(cfg, dims, PrecisionConfig(dtype="fp32")), load_tokenizer("bundled"))
    prompts = [[5, 6, 7, 8], [9, 10, 11]]
    free = engine.generate(prompts, SamplingParams(temperature=1.0, max_tokens=8, seed=3))
    stop = free[0].token_ids[stop_after]
    engine.load_state_dict({"calls": 0})
    stopped = engine.generate(prompts, SamplingParams(temperature=1.0, max_tokens=8, seed=3, stop_token_ids=[stop]))
    return [(g.token_ids, g.finish_reason) for g in free], [(g.token_ids, g.finish_reason) for g in stopped], stop


def test_stop_token_ids_end_a_response():
    free, stopped, stop = run_ranks(1, _decode_twice, 2)[0]
    first_free, first_stopped = free[0][0], stopped[0][0]
    end = first_free.index(stop)  # its first occurrence, at position 2 or before
    assert first_stopped == first_free[: end + 1] and stopped[0][1] == "stop"
    # the other response is cut at the same token if it samples it, else unchanged
    other_free, (other_stopped, reason) = free[1][0], stopped[1]
    if stop in other_free:
        assert other_stopped == other_free[: other_free.index(stop) + 1] and reason == "stop"
    else:
        assert other_stopped == other_free and reason == free[1][1]
