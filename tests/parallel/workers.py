"""Worker functions for the multi-rank engine tests (importable by spawned processes)."""

from __future__ import annotations

PROMPTS = [[5, 17, 42, 9, 33], [5, 17, 42, 9, 33], [8, 100, 7, 64], [301, 2, 77, 19, 4, 250, 11]]


def decode_at_layout(model_name: str, layout: dict, ckpt: str, max_tokens: int, kv_cache: bool = True):
    """Build ``model_name`` at ``layout`` (fp32), load the weights in ``ckpt`` (saving a fresh
    init there first when it holds none), sample :data:`PROMPTS` with the built-in engine.
    Returns [(token_ids, logprobs), ...] on global rank 0, None elsewhere."""
    from pathlib import Path
    from types import SimpleNamespace

    import torch.distributed as dist
    from megatron.core import parallel_state as ps
    from omegaconf import OmegaConf

    from r1mega.config.paths import conf_dir
    from r1mega.data.tokenizer import load_tokenizer
    from r1mega.models.config import ModelConfig
    from r1mega.models.precision import PrecisionConfig
    from r1mega.parallel.config import ParallelConfig
    from r1mega.parallel.dims import ParallelDims
    from r1mega.rollout.base import SamplingParams
    from r1mega.rollout.megatron_engine import MegatronEngine
    from r1mega.training import checkpoint as ckpt_mod
    from r1mega.training.setup import build_chunks
    from tests.foundation.dist_utils import world_size

    model_cfg = ModelConfig(**OmegaConf.to_container(OmegaConf.load(conf_dir() / "model" / f"{model_name}.yaml")))
    dims = ParallelDims.resolve(ParallelConfig(**layout), world_size(), model_cfg)
    dims.build("gloo", seed=11)
    chunks = build_chunks(model_cfg, dims, PrecisionConfig(dtype="fp32"))
    if ckpt_mod.latest_checkpoint(ckpt) is None:
        tm = SimpleNamespace(unwrapped=lambda: chunks, model_cfg=model_cfg, dims=dims)
        ckpt_mod.save_model_weights(Path(ckpt), tm)
    ckpt_mod.load_model_weights(ckpt_mod.latest_checkpoint(ckpt), chunks)
    engine = MegatronEngine(chunks, load_tokenizer("bundled"), kv_cache=kv_cache, lockstep=dims.ep > 1)
    gens = engine.generate(PROMPTS, SamplingParams(temperature=1.0, max_tokens=max_tokens, seed=3))
    out = [(g.token_ids, g.logprobs) for g in gens] if dist.get_rank() == 0 else None
    ps.destroy_model_parallel()
    dist.destroy_process_group()
    return out


def grads_at_layout(model_name: str, layout: dict, ckpt: str):
    """fp32 gradients of sum(log p(labels)) on fixed tokens at ``layout`` (after Megatron's
    finalize_model_grads), TP shards gathered: {name: grad} on global rank 0, None elsewhere.
    Names are those of a TP-only layout (PP and EP renumber layers and experts)."""
    import torch
    import torch.distributed as dist
    from megatron.core import parallel_state as ps
    from megatron.core.pipeline_parallel import get_forward_backward_func
    from omegaconf import OmegaConf

    from r1mega.config.paths import conf_dir
    from r1mega.models.config import ModelConfig
    from r1mega.models.precision import PrecisionConfig
    from r1mega.parallel.config import ParallelConfig
    from r1mega.parallel.dims import ParallelDims
    from r1mega.rl.logprobs import vocab_parallel_logprobs
    from r1mega.training import checkpoint as ckpt_mod
    from r1mega.training.config import OptimConfig, TrainerConfig
    from r1mega.training.setup import build_train_model
    from tests.foundation.dist_utils import world_size

    model_cfg = ModelConfig(**OmegaConf.to_container(OmegaConf.load(conf_dir() / "model" / f"{model_name}.yaml")))
    dims = ParallelDims.resolve(ParallelConfig(**layout), world_size(), model_cfg)
    dims.build("gloo", seed=11)
    tm = build_train_model(model_cfg, dims, OptimConfig(), TrainerConfig(precision=PrecisionConfig(dtype="fp32")))
    ckpt_mod.load_model_weights(ckpt_mod.latest_checkpoint(ckpt), tm.unwrapped())
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, model_cfg.vocab_size, (4, 24), generator=g)
    labels = torch.randint(0, model_cfg.vocab_size, (4, 24), generator=g)
    pos = torch.arange(24).expand(4, 24)

    def step(data_iterator, model):
        out = model(tokens, pos, None)

        def loss(logits):
            lp, _ = vocab_parallel_logprobs(logits, labels, group=ps.get_tensor_model_parallel_group())
            return -lp.mean(), {}

        return out, loss

    for c in tm.chunks:
        c.zero_grad_buffer()
    get_forward_backward_func()(forward_step_func=step, data_iterator=iter([None]), model=tm.chunks,
                                num_microbatches=1, seq_length=24, micro_batch_size=4, forward_only=False)
    out = {}
    for name, p in tm.unwrapped()[0].named_parameters():
        grad = p.main_grad.detach().clone()
        if getattr(p, "tensor_model_parallel", False) and ps.get_tensor_model_parallel_world_size() > 1:
            parts = [torch.empty_like(grad) for _ in range(ps.get_tensor_model_parallel_world_size())]
            dist.all_gather(parts, grad.contiguous(), group=ps.get_tensor_model_parallel_group())
            grad = torch.cat(parts, dim=p.partition_dim)
        out[name] = grad
    result = out if dist.get_rank() == 0 else None
    ps.destroy_model_parallel()
    dist.destroy_process_group()
    return result
