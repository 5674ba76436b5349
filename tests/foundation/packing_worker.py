"""Packed vs unpacked SFT loss through a real Megatron model (run in a spawned process)."""

from __future__ import annotations

import torch


def packed_vs_unpacked(model_name: str):
    from omegaconf import OmegaConf

    from r1mega.config.paths import conf_dir
    from r1mega.data.sft import collate, collate_packed, pack, packed_seq_params, tokenize_sft
    from r1mega.data.synthetic import SyntheticTaskConfig, generate
    from r1mega.data.tokenizer import load_tokenizer
    from r1mega.models.config import ModelConfig
    from r1mega.models.precision import PrecisionConfig
    from r1mega.parallel.config import ParallelConfig
    from r1mega.parallel.dims import ParallelDims
    from r1mega.training.setup import build_chunks

    cfg = ModelConfig(**OmegaConf.to_container(OmegaConf.load(conf_dir() / "model" / f"{model_name}.yaml")))
    dims = ParallelDims.resolve(ParallelConfig(), 1, cfg)
    dims.build("gloo", seed=3)
    model = build_chunks(cfg, dims, PrecisionConfig(dtype="fp32"))[0].eval()
    tok = load_tokenizer()
    samples = [tokenize_sft(r, tok, "chat", 128) for r in generate(SyntheticTaskConfig(num_train=12, num_test=1))["train"]]
    rows = pack(samples, 128)
    packed = collate_packed(rows, tok.pad_token_id, 128)
    flat = collate([s for r in rows for s in r], tok.pad_token_id)
    with torch.no_grad():
        lp = model(packed["tokens"], packed["position_ids"], None, labels=packed["labels"],
                   packed_seq_params=packed_seq_params(packed))
        lu = model(flat["tokens"], flat["position_ids"], None, labels=flat["labels"])
    return (lp * packed["loss_mask"]).sum().item(), (lu * flat["loss_mask"]).sum().item(), len(rows), len(samples)
