"""Tiny random Hugging Face checkpoints of every family, written by transformers itself.

Every tensor is re-drawn after construction (norm weights around 1, router bias non-zero), so
a mapping that swaps, transposes or drops any tensor changes the logits. Sizes are chosen to
exercise the interesting cases on two CPU cores in seconds:

* qwen2: tied embeddings, QKV bias, GQA (4 heads, 2 groups), vocabulary 300 (Megatron pads it
  to 384 at TP=1 and 512 at TP=2, so loading at another TP exercises the padding mismatch);
* llama: untied, explicit head_dim != hidden/heads, Llama-3.1 rope scaling;
* deepseek_v3: MLA with q LoRA, YaRN with mscale_all_dim, one dense + one MoE layer,
  8 experts in 4 groups (top-4, 2 groups), a shared expert, expert-score bias;
* qwen3: QK-norm, no QKV bias, untied, head_dim 32 != hidden/heads (as Qwen3-30B-A3B's 128 vs
  64), GQA (4 heads, 2 groups), vocabulary 300 (padded);
* qwen3_moe: the same attention, tied embeddings, every layer MoE: 8 experts, top-4 with
  normalised weights (norm_topk_prob), no shared expert.
"""

from __future__ import annotations

from pathlib import Path

import torch

FAMILIES = ("qwen2", "llama", "deepseek_v3", "qwen3", "qwen3_moe")
INDEX = "model.safetensors.index.json"


def hf_config(family: str, **overrides):
    from transformers import DeepseekV3Config, LlamaConfig, Qwen2Config, Qwen3Config, Qwen3MoeConfig

    if family == "qwen2":
        kw = dict(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                  rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, tie_word_embeddings=True,
                  rms_norm_eps=1e-6)
        return Qwen2Config(**{**kw, **overrides})
    if family == "llama":
        kw = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, head_dim=32, max_position_embeddings=16384,
                  rms_norm_eps=1e-5, tie_word_embeddings=False,
                  rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                                   "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                   "original_max_position_embeddings": 8192})
        return LlamaConfig(**{**kw, **overrides})
    if family == "deepseek_v3":
        kw = dict(vocab_size=512, hidden_size=64, intermediate_size=128, moe_intermediate_size=32,
                  num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4, n_shared_experts=1,
                  n_routed_experts=8, routed_scaling_factor=2.5, kv_lora_rank=16, q_lora_rank=32,
                  qk_rope_head_dim=8, v_head_dim=16, qk_nope_head_dim=16, n_group=4, topk_group=2,
                  num_experts_per_tok=4, first_k_dense_replace=1, max_position_embeddings=1024,
                  num_mtp_layers=0, rms_norm_eps=1e-6,
                  rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
                                   "original_max_position_embeddings": 256, "beta_fast": 32.0,
                                   "beta_slow": 1.0, "mscale": 1.0, "mscale_all_dim": 1.0})
        return DeepseekV3Config(**{**kw, **overrides})
    if family == "qwen3":
        kw = dict(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, head_dim=32, max_position_embeddings=1024,
                  rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}, tie_word_embeddings=False,
                  rms_norm_eps=1e-6)
        return Qwen3Config(**{**kw, **overrides})
    if family == "qwen3_moe":
        kw = dict(vocab_size=256, hidden_size=64, intermediate_size=128, moe_intermediate_size=32,
                  num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=32,
                  num_experts=8, num_experts_per_tok=4, norm_topk_prob=True, max_position_embeddings=1024,
                  rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}, tie_word_embeddings=True,
                  rms_norm_eps=1e-6)
        return Qwen3MoeConfig(**{**kw, **overrides})
    raise ValueError(family)


@torch.no_grad()
def randomize(model, seed: int = 0) -> None:
    """Re-draw every tensor: norms ~ 1 +- 0.1, biases and weights ~ N(0, 0.05^2)."""
    gen = torch.Generator().manual_seed(seed)
    for name, t in model.state_dict().items():
        noise = torch.randn(t.shape, generator=gen, dtype=torch.float32)
        if "norm" in name:
            t.copy_(1.0 + 0.1 * noise)
        elif "e_score_correction_bias" in name:
            t.copy_(0.01 * noise)
        else:
            t.copy_(0.05 * noise)


def make_hf(family: str, path: str | Path, seed: int = 0, dtype=torch.float32, **overrides) -> Path:
    """Write a random tiny ``family`` checkpoint (plus a stand-in tokenizer file) to ``path``."""
    from transformers import AutoModelForCausalLM

    path = Path(path)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(hf_config(family, **overrides), dtype=torch.float32)
    randomize(model, seed)
    model.to(dtype).save_pretrained(path)
    (path / "tokenizer_config.json").write_text('{"model_max_length": 1024}\n')
    return path


def read_all(path: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of a HF checkpoint directory."""
    from safetensors.torch import load_file

    out = {}
    for f in sorted(Path(path).glob("*.safetensors")):
        out.update(load_file(f))
    return out


def add_mtp_layers(path: str | Path, count: int = 1, seed: int = 1, copies: bool = True) -> list[str]:
    """Give the DeepSeek-V3 checkpoint at ``path`` ``count`` multi-token-prediction layers, as
    DeepSeek's checkpoints store them (transformers' model has none, so they are written here):
    layer ``model.layers.{N + k}`` (N = num_hidden_layers) with ``enorm``, ``hnorm``,
    ``eh_proj`` [hidden, 2*hidden], ``shared_head.norm``, a full decoder layer shaped like the
    last one (MoE), random as in :func:`randomize`, and -- with ``copies`` -- ``embed_tokens``
    and ``shared_head.head``, copies of the main embedding and head. They go into their own
    ``mtp.safetensors``; ``model.safetensors.index.json`` is (re)written to list every file and
    ``config.json`` declares ``num_nextn_predict_layers``. Returns the new tensor names."""
    import json

    from safetensors.torch import load_file, save_file

    path = Path(path)
    cfg = json.loads((path / "config.json").read_text())
    n, hidden = cfg["num_hidden_layers"], cfg["hidden_size"]
    main = read_all(path)
    gen = torch.Generator().manual_seed(seed)
    new: dict[str, torch.Tensor] = {}
    last = f"model.layers.{n - 1}."
    for k in range(count):
        hf = f"model.layers.{n + k}."
        shapes = {name.replace(last, hf, 1): t for name, t in main.items() if name.startswith(last)}
        shapes.update({f"{hf}enorm.weight": main["model.norm.weight"], f"{hf}hnorm.weight": main["model.norm.weight"],
                       f"{hf}shared_head.norm.weight": main["model.norm.weight"],
                       f"{hf}eh_proj.weight": torch.empty(hidden, 2 * hidden, dtype=main["model.norm.weight"].dtype)})
        for name in sorted(shapes):
            like = shapes[name]
            noise = torch.randn(like.shape, generator=gen, dtype=torch.float32)
            scale, base = (0.1, 1.0) if "norm" in name else (0.01, 0.0) if "e_score_correction_bias" in name \
                else (0.05, 0.0)
            new[name] = (base + scale * noise).to(like.dtype)
        if copies:
            new[f"{hf}embed_tokens.weight"] = main["model.embed_tokens.weight"].clone()
            new[f"{hf}shared_head.head.weight"] = main["lm_head.weight"].clone()
    if (path / INDEX).exists():
        raise ValueError(f"{path} is sharded already; add_mtp_layers expects one model.safetensors")
    (path / "model.safetensors").rename(path / "model-00001-of-00002.safetensors")
    save_file(new, str(path / "model-00002-of-00002.safetensors"), metadata={"format": "pt"})
    weight_map, total = {}, 0
    for f in sorted(path.glob("model-*.safetensors")):
        for name, t in load_file(f).items():
            weight_map[name] = f.name
            total += t.numel() * t.element_size()
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (path / INDEX).write_text(json.dumps(index, indent=2, sort_keys=True))
    cfg["num_nextn_predict_layers"] = count
    (path / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True))
    return sorted(new)
