"""GRPO loss and gradients of one batch, padded vs packed, through a real Megatron model (run in
a spawned process by test_rl_packing_model.py)."""

from __future__ import annotations

import torch


def _model(model_name: str, aux_loss: bool = False, spec: str = "auto", dtype: str = "fp32"):
    from omegaconf import OmegaConf

    from r1mega.config.paths import conf_dir
    from r1mega.models.config import ModelConfig
    from r1mega.models.precision import PrecisionConfig
    from r1mega.parallel.config import ParallelConfig
    from r1mega.parallel.dims import ParallelDims
    from r1mega.training.setup import build_chunks

    cfg = ModelConfig(**OmegaConf.to_container(OmegaConf.load(conf_dir() / "model" / f"{model_name}.yaml")))
    cfg.mtp_num_layers = 0
    cfg.spec = spec
    if not aux_loss:
        # the load-balancing loss of a padded batch counts the padding tokens it routes (the
        # very thing packing removes): without it the two layouts compute the same function
        cfg.moe_aux_loss_coeff = 0.0
    dims = ParallelDims.resolve(ParallelConfig(), 1, cfg)
    dims.build("nccl" if torch.cuda.is_available() else "gloo", seed=5)
    return build_chunks(cfg, dims, PrecisionConfig(dtype=dtype))[0], cfg


def _batch(vocab: int, n: int = 6):
    from r1mega.rl.batch import RolloutBatch
    from r1mega.rollout.base import Generation

    g = torch.Generator().manual_seed(11)
    gens = []
    for i in range(n):
        p, r = 3 + i % 4, 2 + (5 * i) % 13  # very different lengths: padding would be ~half the batch
        gens.append(Generation(torch.randint(3, vocab, (p,), generator=g).tolist(),
                               torch.randint(3, vocab, (r,), generator=g).tolist(),
                               (-torch.rand(r, generator=g)).tolist(), "stop"))
    longest = max(len(x.prompt_ids) + len(x.token_ids) for x in gens) - 1
    b = RolloutBatch.from_generations(gens, torch.zeros(n), {}, pad_id=0, length=longest)
    b.advantages = torch.randn(n, generator=g)
    return b


def _run(model, cfg, batch, rl, layout) -> dict:
    from r1mega.rl.forward import grpo_step
    from r1mega.rl.losses import global_loss_denominator
    from r1mega.rl.packing import split

    model.zero_grad(set_to_none=True)
    _, mbs = split(batch, list(range(len(batch))), layout)
    denom = global_loss_denominator([m.mask for m in mbs], rl.loss_agg)
    seen = []
    hooks = [m.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].shape[0] * inp[0].shape[1]))
             for name, m in model.named_modules() if name.endswith("mlp.router")]
    step = grpo_step(rl, 1.0, cfg.vocab_size, denom, 1.0)
    total = 0.0
    for mb in mbs:
        out, loss_func = step(iter([mb]), model)
        loss, _ = loss_func(out)
        loss.backward()
        total += float(loss)
    for h in hooks:
        h.remove()
    grads = {n: p.grad.detach().float().cpu() for n, p in model.named_parameters() if p.grad is not None}
    return {"loss": total, "grads": grads, "router_tokens": sum(seen), "micro_batches": len(mbs),
            "moe_layers": len(hooks)}


def padded_and_packed(model_name: str, spec: str = "auto", dtype: str = "fp32") -> dict:
    """The same model and batch through padded micro-batches (2 rows each) and packed ones
    (40-token budget): {"padded": ..., "packed": ..., "real_tokens", "padded_tokens"}."""
    from r1mega.rl.config import GRPOConfig
    from r1mega.rl.packing import Layout

    model, cfg = _model(model_name, spec=spec, dtype=dtype)
    batch = _batch(min(cfg.vocab_size, 400))
    # ratios near 1 (old log-probs from the model itself, then nudged) so that clipping, the
    # policy-gradient term and the entropy term all carry gradient
    rl = GRPOConfig(clip_high=0.28, entropy_coef=0.01, kl_beta=0.0, loss_agg="seq-mean-token-mean").validate()
    batch.old_logp = _model_logp(model, cfg, batch) + 0.1 * torch.randn(batch.mask.shape, generator=torch.Generator().manual_seed(3))
    batch.old_logp = batch.old_logp * batch.mask
    return {"padded": _run(model, cfg, batch, rl, Layout(2, None, 0, 1)),
            "packed": _run(model, cfg, batch, rl, Layout(2, 40, 0, 16 if torch.cuda.is_available() else 1)),
            "real_tokens": int(batch.row_lengths.sum()), "padded_tokens": batch.tokens.numel()}


def _model_logp(model, cfg, batch) -> torch.Tensor:
    from r1mega.rl.forward import logprob_step
    from r1mega.rl.packing import Layout, split

    parts, mbs = split(batch, list(range(len(batch))), Layout(len(batch), None, 0, 1))
    with torch.no_grad():
        out, loss_func = logprob_step(1.0, cfg.vocab_size)(iter(mbs), model)
        return loss_func(out)[1]["logp"].float()
