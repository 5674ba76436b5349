"""Build Megatron-Core ``GPTModel``s from a :class:`ModelConfig`.

Three choices are made here and nowhere else:

* the ``TransformerConfig`` (``MLATransformerConfig`` for MLA models) that carries the
  architecture, the parallel sizes and the precision into Megatron;
* the layer spec: ``local`` uses Megatron-Core's own modules (plus r1mega's SDPA core
  attention, which handles MLA's distinct key/value head sizes) and runs on CPU; ``te`` uses
  Transformer Engine modules, required for FP8; ``auto`` picks ``te`` when CUDA and TE exist;
* the ``ModuleSpec`` swap is the only place implementation variants differ; layers never branch.

Models with ``mtp_num_layers > 0`` get Megatron's multi-token-prediction block on the last
pipeline stage and are :class:`~r1mega.models.mtp.MTPGPTModel` s (see that module for when the
MTP layers run).
"""

from __future__ import annotations

import dataclasses
import importlib.util

import torch
import torch.nn.functional as F

from r1mega.models.config import ModelConfig
from r1mega.models.precision import PrecisionConfig
from r1mega.parallel.dims import ParallelDims


def resolve_spec(model: ModelConfig) -> str:
    """'local' or 'te' for this machine and config."""
    have_te = torch.cuda.is_available() and importlib.util.find_spec("transformer_engine") is not None
    if model.spec == "auto":
        return "te" if have_te else "local"
    if model.spec == "te" and not have_te:
        raise ValueError("model.spec=te needs CUDA and transformer-engine (pip install 'r1mega[gpu]')")
    return model.spec


def padded_vocab_size(vocab_size: int, tp: int, multiple: int = 128) -> int:
    """Megatron pads the embedding so each TP shard is a multiple of ``multiple`` rows."""
    step = multiple * tp
    return ((vocab_size + step - 1) // step) * step


def transformer_config(model: ModelConfig, dims: ParallelDims, precision: PrecisionConfig):
    """The Megatron ``TransformerConfig`` for this model, layout and precision."""
    from megatron.core.transformer.transformer_config import MLATransformerConfig, TransformerConfig

    dtype = precision.torch_dtype()
    kwargs = dict(
        num_layers=model.num_layers,
        hidden_size=model.hidden_size,
        ffn_hidden_size=model.ffn_hidden_size,
        num_attention_heads=model.num_attention_heads,
        num_query_groups=model.num_query_groups,
        kv_channels=model.kv_channels,
        normalization="RMSNorm",
        layernorm_epsilon=model.norm_epsilon,
        gated_linear_unit=True,
        activation_func=F.silu,
        add_bias_linear=False,
        add_qkv_bias=model.add_qkv_bias,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        init_method_std=model.init_method_std,
        tensor_model_parallel_size=dims.tp,
        pipeline_model_parallel_size=dims.pp,
        virtual_pipeline_model_parallel_size=dims.vpp,
        context_parallel_size=dims.cp,
        expert_model_parallel_size=dims.ep,
        expert_tensor_parallel_size=dims.etp,
        sequence_parallel=dims.sequence_parallel,
        params_dtype=dtype,
        bf16=dtype == torch.bfloat16,
        pipeline_dtype=dtype,
        use_cpu_initialization=not torch.cuda.is_available(),
        bias_dropout_fusion=False,
        masked_softmax_fusion=False,
        apply_rope_fusion=False,
        gradient_accumulation_fusion=False,
        persist_layer_norm=False,
        attention_softmax_in_fp32=True,
        mtp_num_layers=model.mtp_num_layers or None,
        mtp_loss_scaling_factor=model.mtp_loss_scaling_factor,
        deterministic_mode=not torch.cuda.is_available(),
        **_moe_kwargs(model),
        **_fp8_kwargs(precision),
    )
    if not model.multi_latent_attention:
        return TransformerConfig(**kwargs, qk_layernorm=model.qk_layernorm)
    return MLATransformerConfig(
        **kwargs,
        multi_latent_attention=True,
        rotary_base=model.rotary_base,  # MLA owns its rope; dense models get it via GPTModel
        q_lora_rank=model.q_lora_rank,
        kv_lora_rank=model.kv_lora_rank,
        qk_head_dim=model.qk_head_dim,
        qk_pos_emb_head_dim=model.qk_pos_emb_head_dim,
        v_head_dim=model.v_head_dim,
        qk_layernorm=True,
        rope_type="yarn" if model.rope_type == "yarn" else "rope",
        rotary_scaling_factor=model.rope_scaling_factor,
        original_max_position_embeddings=model.rope_original_max_position_embeddings,
        beta_fast=model.yarn_beta_fast,
        beta_slow=model.yarn_beta_slow,
        mscale=model.yarn_mscale,
        mscale_all_dim=model.yarn_mscale_all_dim,
    )


def _moe_kwargs(model: ModelConfig) -> dict:
    if not model.is_moe:
        return {}
    return dict(
        num_moe_experts=model.num_experts,
        moe_ffn_hidden_size=model.moe_ffn_hidden_size,
        moe_shared_expert_intermediate_size=model.moe_shared_expert_intermediate_size,
        moe_router_topk=model.moe_router_topk,
        moe_layer_freq=model.moe_layer_pattern(),
        moe_router_score_function=model.moe_router_score_function,
        moe_router_enable_expert_bias=model.moe_router_enable_expert_bias,
        moe_router_bias_update_rate=model.moe_router_bias_update_rate,
        moe_router_num_groups=model.moe_router_num_groups,
        moe_router_group_topk=model.moe_router_group_topk,
        moe_router_topk_scaling_factor=model.moe_router_topk_scaling_factor,
        # softmax over the top-k logits == the full softmax's top-k renormalised (norm_topk_prob)
        moe_router_pre_softmax=model.moe_router_score_function == "softmax" and not model.moe_router_norm_topk,
        moe_router_load_balancing_type="seq_aux_loss" if model.moe_aux_loss_coeff > 0 else "none",
        moe_aux_loss_coeff=model.moe_aux_loss_coeff,
        moe_router_dtype="fp32",
        moe_token_dispatcher_type="alltoall",
        moe_grouped_gemm=model.moe_grouped_gemm,
        moe_permute_fusion=False,
    )


def _fp8_kwargs(precision: PrecisionConfig) -> dict:
    if precision.fp8 is None:
        return {}
    return dict(fp8=precision.fp8, fp8_recipe=precision.fp8_recipe, fp8_param=precision.fp8_param)


def layer_spec(model: ModelConfig, config, spec: str):
    """The decoder block spec: Megatron's layer specs with r1mega's local core attention."""
    from megatron.core.models.gpt.gpt_layer_specs import get_gpt_decoder_block_spec

    block = get_gpt_decoder_block_spec(config, use_transformer_engine=spec == "te", normalization="RMSNorm")
    if spec == "local":
        from r1mega.models.attention import SDPACoreAttention

        for layer in block.layer_specs:
            layer.submodules.self_attention.submodules.core_attention = SDPACoreAttention
            if model.multi_latent_attention:
                layer.submodules.sharded_state_dict_keys_map = _te_keys_for_local_mla(layer)
            elif not _is_dense(layer):
                layer.submodules.sharded_state_dict_keys_map = _te_keys_for_local_moe(layer)
    return block


def _is_dense(layer) -> bool:
    from megatron.core.transformer.mlp import MLP

    return layer.submodules.mlp.module is MLP


def _te_keys_for_local_moe(layer) -> dict:
    """Megatron's local spec for standard attention maps ``pre_mlp_layernorm.`` to TE's fused
    ``mlp.linear_fc1.layer_norm_`` in MoE layers too, where TE keeps ``pre_mlp_layernorm``
    (its MoE MLP has no ``linear_fc1``); only the input-norm renaming applies there (Qwen3-MoE)."""
    return {k: v for k, v in layer.submodules.sharded_state_dict_keys_map.items() if k != "pre_mlp_layernorm."}


def _te_keys_for_local_mla(layer) -> dict:
    """Checkpoint keys of a local MLA layer renamed to the TE spec's, so either spec loads it.

    Megatron's local dense spec does this itself (``input_layernorm.`` ->
    ``linear_qkv.layer_norm_``); its local MLA spec does not. TE fuses the q/kv latent norms into
    ``linear_q_up_proj`` / ``linear_kv_up_proj`` and, in dense (non-MoE) layers, the pre-MLP
    norm into ``mlp.linear_fc1``.
    """
    from megatron.core.transformer.mlp import MLP

    keys = {
        "self_attention.q_layernorm.": "self_attention.linear_q_up_proj.layer_norm_",
        "self_attention.kv_layernorm.": "self_attention.linear_kv_up_proj.layer_norm_",
    }
    if layer.submodules.mlp.module is MLP:
        keys["pre_mlp_layernorm."] = "mlp.linear_fc1.layer_norm_"
    return keys


def build_model(
    model: ModelConfig,
    dims: ParallelDims,
    precision: PrecisionConfig,
    pre_process: bool = True,
    post_process: bool = True,
    vp_stage: int | None = None,
    init_weights: bool = True,
):
    """One ``GPTModel`` chunk for this rank's pipeline stage (process groups must exist).

    ``init_weights=False`` leaves parameters uninitialised (``torch.empty``) for callers that
    overwrite every one of them anyway (checkpoint loading, conversion): on CPU Megatron's
    initialisation costs about as much as reading the weights.
    """
    from megatron.core.models.gpt import GPTModel

    from r1mega.models.mtp import MTPGPTModel, mtp_block_spec

    spec = resolve_spec(model)
    config = transformer_config(model, dims, precision)
    config.perform_initialization = init_weights
    rope_kwargs = {}
    if model.rope_type == "llama3":
        rope_kwargs = dict(rope_scaling=True, rope_scaling_factor=model.rope_scaling_factor)
    block = layer_spec(model, config, spec)
    mtp = mtp_block_spec(config, block, spec == "te", vp_stage) if post_process else None
    gpt = (MTPGPTModel if model.mtp_num_layers else GPTModel)(
        config=config,
        transformer_layer_spec=block,
        vocab_size=padded_vocab_size(model.vocab_size, dims.tp),
        max_sequence_length=model.max_position_embeddings,
        pre_process=pre_process,
        post_process=post_process,
        share_embeddings_and_output_weights=model.tie_embeddings,
        position_embedding_type="rope",  # MLA layers own their (YaRN) rope; GPTModel skips it
        rotary_base=int(model.rotary_base),
        vp_stage=vp_stage,
        mtp_block_spec=mtp,
        **rope_kwargs,
    )
    if model.rope_type == "llama3":
        _llama3_inv_freq(gpt, model)
    if torch.cuda.is_available():
        gpt.cuda(torch.cuda.current_device())
    return gpt


def _llama3_inv_freq(gpt, model: ModelConfig) -> None:
    """Llama-3 rope scaling with the config's ``low/high_freq_factor`` and original context.

    Megatron-Core 0.16's ``RotaryEmbedding`` passes only the factor to its ``_apply_scaling``,
    whose other arguments default to Llama 3.1's values (1, 4, 8192). The frequencies are
    recomputed here with the same function and all four values: bit-identical for those
    defaults (tests/convert), correct for any other. Before the first forward, whose result
    Megatron caches per sequence length.
    """
    rope = getattr(gpt, "rotary_pos_emb", None)
    if rope is None:
        return
    dim = model.head_dim  # rotary_percent is 1.0
    base = int(model.rotary_base)  # as GPTModel receives it
    device = rope.inv_freq.device
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32, device=device) / dim))
    rope.inv_freq = rope._apply_scaling(
        inv_freq, factor=model.rope_scaling_factor, low_freq_factor=model.rope_low_freq_factor,
        high_freq_factor=model.rope_high_freq_factor,
        original_max_position_embeddings=model.rope_original_max_position_embeddings)


def describe(model: ModelConfig) -> dict:
    """A JSON-able record of the architecture (stored beside checkpoints)."""
    return dataclasses.asdict(model)
