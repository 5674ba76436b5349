"""config.json <-> ModelConfig: round trips, the real DeepSeek-V3 config, and refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from r1mega.convert.mappings import architecture_mismatches, hf_config_from_model, model_config_from_hf
from r1mega.models.config import ModelConfig
from tests.convert.tiny_models import FAMILIES, hf_config

CONF = Path(__file__).resolve().parents[2] / "conf" / "model"

# deepseek-ai/DeepSeek-V3 config.json (legacy dialect: top-level rope_theta, rope_scaling.type).
DEEPSEEK_V3_HUB = {
    "architectures": ["DeepseekV3ForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
    "auto_map": {"AutoConfig": "configuration_deepseek.DeepseekV3Config"}, "aux_loss_alpha": 0.001,
    "bos_token_id": 0, "eos_token_id": 1, "ep_size": 1, "first_k_dense_replace": 3, "hidden_act": "silu",
    "hidden_size": 7168, "initializer_range": 0.02, "intermediate_size": 18432, "kv_lora_rank": 512,
    "max_position_embeddings": 163840, "model_type": "deepseek_v3", "moe_intermediate_size": 2048,
    "moe_layer_freq": 1, "n_group": 8, "n_routed_experts": 256, "n_shared_experts": 1, "norm_topk_prob": True,
    "num_attention_heads": 128, "num_experts_per_tok": 8, "num_hidden_layers": 61, "num_key_value_heads": 128,
    "num_nextn_predict_layers": 1, "q_lora_rank": 1536, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64,
    "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                            "weight_block_size": [128, 128]},
    "rms_norm_eps": 1e-06,
    "rope_scaling": {"beta_fast": 32, "beta_slow": 1, "factor": 40, "mscale": 1.0, "mscale_all_dim": 1.0,
                     "original_max_position_embeddings": 4096, "type": "yarn"},
    "rope_theta": 10000, "routed_scaling_factor": 2.5, "scoring_func": "sigmoid", "seq_aux": True,
    "tie_word_embeddings": False, "topk_group": 4, "topk_method": "noaux_tc", "torch_dtype": "bfloat16",
    "transformers_version": "4.33.1", "use_cache": True, "v_head_dim": 128, "vocab_size": 129280,
}

# Qwen/Qwen3-8B and Qwen/Qwen3-30B-A3B config.json (legacy dialect: top-level rope_theta,
# rope_scaling null; the MoE one says num_experts, which transformers 5 stores as num_local_experts).
QWEN3_COMMON = {
    "attention_bias": False, "attention_dropout": 0.0, "bos_token_id": 151643, "eos_token_id": 151645,
    "head_dim": 128, "hidden_act": "silu", "initializer_range": 0.02, "max_position_embeddings": 40960,
    "num_attention_heads": 32, "rms_norm_eps": 1e-06, "rope_scaling": None, "rope_theta": 1000000,
    "sliding_window": None, "tie_word_embeddings": False, "torch_dtype": "bfloat16", "use_cache": True,
    "use_sliding_window": False, "vocab_size": 151936, "transformers_version": "4.51.0",
}
QWEN3_8B_HUB = {
    **QWEN3_COMMON, "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_size": 4096,
    "intermediate_size": 12288, "max_window_layers": 36, "num_hidden_layers": 36, "num_key_value_heads": 8,
}
QWEN3_30B_A3B_HUB = {
    **QWEN3_COMMON, "architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", "hidden_size": 2048,
    "intermediate_size": 6144, "max_window_layers": 48, "num_hidden_layers": 48, "num_key_value_heads": 4,
    "decoder_sparse_step": 1, "mlp_only_layers": [], "moe_intermediate_size": 768, "norm_topk_prob": True,
    "num_experts": 128, "num_experts_per_tok": 8, "output_router_logits": False, "router_aux_loss_coef": 0.001,
}


def yaml_model(name: str) -> ModelConfig:
    return ModelConfig(**OmegaConf.to_container(OmegaConf.load(CONF / f"{name}.yaml")))


def test_deepseek_v3_hub_config_is_the_yaml_model():
    cfg = model_config_from_hf(DEEPSEEK_V3_HUB)
    assert architecture_mismatches(yaml_model("deepseek_v3"), cfg) == []
    assert (cfg.rope_type, cfg.rope_scaling_factor, cfg.yarn_mscale_all_dim) == ("yarn", 40.0, 1.0)
    assert "auto_map" not in cfg.extra and "quantization_config" not in cfg.extra
    assert cfg.extra["eos_token_id"] == 1  # carried through untouched


@pytest.mark.parametrize("name,hub", [("qwen3_8b", QWEN3_8B_HUB), ("qwen3_30b_a3b", QWEN3_30B_A3B_HUB)])
def test_qwen3_hub_configs_are_the_yaml_models(name, hub):
    """The released configs read as the YAML models, and what export writes reads back in
    transformers as the same model (num_experts -> num_local_experts, head_dim kept)."""
    from transformers import AutoConfig

    cfg = model_config_from_hf(hub)
    assert architecture_mismatches(yaml_model(name), cfg) == []
    assert cfg.qk_layernorm and cfg.head_dim == 128 and not cfg.add_qkv_bias
    loaded = AutoConfig.for_model(**hf_config_from_model(cfg))
    assert (loaded.head_dim, loaded.num_key_value_heads, loaded.rope_parameters["rope_theta"]) == (
        128, hub["num_key_value_heads"], 1e6)
    if cfg.is_moe:
        assert (loaded.num_experts, loaded.num_experts_per_tok, loaded.norm_topk_prob) == (128, 8, True)
        assert cfg.extra["router_aux_loss_coef"] == 0.001  # a training choice, carried through


@pytest.mark.parametrize("name", sorted(p.stem for p in CONF.glob("*.yaml")))
def test_yaml_models_round_trip_through_transformers(name):
    """ModelConfig -> config.json -> transformers' own config class -> ModelConfig."""
    from transformers import AutoConfig

    cfg = yaml_model(name)
    hf = hf_config_from_model(cfg)
    loaded = AutoConfig.for_model(**hf).to_dict()  # transformers accepts and re-serialises it
    back = model_config_from_hf(loaded)
    assert architecture_mismatches(cfg, back) == []


@pytest.mark.parametrize("family", FAMILIES)
def test_transformers_written_configs_round_trip(family):
    raw = hf_config(family).to_dict()
    cfg = model_config_from_hf(raw)
    again = hf_config_from_model(cfg)
    for key in ("hidden_size", "num_hidden_layers", "vocab_size", "tie_word_embeddings", "rope_parameters",
                "num_key_value_heads", "intermediate_size", "rms_norm_eps"):
        assert again[key] == raw[key], key
    assert architecture_mismatches(cfg, model_config_from_hf(again)) == []


def test_llama3_rope_scaling_maps_to_megatron():
    cfg = model_config_from_hf(hf_config("llama").to_dict())
    assert (cfg.rope_type, cfg.rope_scaling_factor, cfg.rotary_base, cfg.kv_channels) == ("llama3", 8.0, 5e5, 32)


@pytest.mark.parametrize("mutate,field", [
    (lambda c: c.update(model_type="gpt2", architectures=["GPT2LMHeadModel"]), "gpt2"),
    (lambda c: c["rope_parameters"].pop("low_freq_factor"), "rope_parameters.low_freq_factor is missing"),
    (lambda c: c.pop("hidden_size"), "hidden_size"),
    (lambda c: c.update(hidden_act="gelu"), "hidden_act"),
])
def test_llama_config_errors_name_the_field(mutate, field):
    raw = hf_config("llama").to_dict()
    mutate(raw)
    with pytest.raises(ValueError, match=field):
        model_config_from_hf(raw)


@pytest.mark.parametrize("family,update,field", [
    ("qwen2", {"use_sliding_window": True}, "use_sliding_window"),
    ("deepseek_v3", {"scoring_func": "softmax"}, "scoring_func"),
    ("deepseek_v3", {"norm_topk_prob": False}, "norm_topk_prob"),
    ("deepseek_v3", {"num_key_value_heads": 2}, "num_key_value_heads"),
    ("qwen3", {"use_sliding_window": True}, "use_sliding_window"),
    ("qwen3", {"attention_bias": True}, "attention_bias"),
    ("qwen3", {"rope_parameters": {"rope_type": "yarn", "rope_theta": 1e6, "factor": 4.0,
                                   "original_max_position_embeddings": 32768}}, "rope_type='yarn'"),
    ("qwen3_moe", {"mlp_only_layers": [0]}, "mlp_only_layers"),
    ("qwen3_moe", {"decoder_sparse_step": 2}, "decoder_sparse_step"),
    ("qwen3_moe", {"num_experts": 16}, "num_experts=16 and num_local_experts=8 disagree"),
])
def test_unsupported_features_name_the_field(family, update, field):
    raw = {**hf_config(family).to_dict(), **update}
    with pytest.raises(ValueError, match=field):
        model_config_from_hf(raw)


@pytest.mark.parametrize("change,field", [
    ({"moe_shared_expert_intermediate_size": 64}, "moe_shared_expert_intermediate_size=64"),
    ({"first_k_dense_layers": 1}, "first_k_dense_layers=1"),
    ({"moe_router_score_function": "sigmoid"}, "moe_router_score_function='sigmoid'"),
])
def test_qwen3_moe_export_refuses_routing_it_cannot_express(change, field):
    """A model config of family qwen3_moe with DeepSeek-style MoE features has no Qwen3-MoE
    config.json: export names the field instead of writing one that loses it."""
    import dataclasses

    cfg = dataclasses.replace(yaml_model("qwen3_moe_tiny"), **change)
    with pytest.raises(ValueError, match=field):
        hf_config_from_model(cfg)
    assert hf_config_from_model(yaml_model("qwen3_moe_tiny"))["num_experts"] == 8
