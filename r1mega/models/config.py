"""Typed description of a model architecture, independent of any framework.

One ``ModelConfig`` describes every family r1mega builds: dense Llama/Qwen-style decoders (Qwen3
with per-head QK-norm), softmax-routed MoE decoders with standard attention (Qwen3-MoE) and
DeepSeek-V3-style MoE decoders with Multi-head Latent Attention (MLA). The provider
(``r1mega.models.provider``) turns it into a Megatron-Core ``TransformerConfig`` + layer spec;
the converters map it to and from a Hugging Face ``config.json``; the planner reads it to
estimate memory. The YAML files in ``conf/model/`` fill it in; nothing else holds model facts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from r1mega.config.errors import ConfigError

FAMILIES = ("deepseek_v3", "qwen2", "llama", "qwen3", "qwen3_moe")
SPECS = ("auto", "local", "te")


@dataclass
class ModelConfig:
    """Architecture of a decoder-only transformer (dense or MoE, MHA/GQA or MLA)."""

    name: str = "deepseek_v3_tiny"
    """Human-readable name; recorded in checkpoints and metrics."""
    family: str = "deepseek_v3"
    """Which weight-name mapping applies: one of deepseek_v3, qwen2, llama, qwen3, qwen3_moe."""
    spec: str = "auto"
    """Layer implementation: local (pure Megatron-Core, runs on CPU), te (Transformer Engine),
    auto (te when CUDA and Transformer Engine are present, else local)."""

    num_layers: int = 4
    """Number of transformer layers (excluding MTP layers)."""
    hidden_size: int = 128
    """Model width."""
    ffn_hidden_size: int = 256
    """Intermediate size of the dense MLP (dense layers of a MoE model too)."""
    num_attention_heads: int = 4
    """Query heads."""
    num_query_groups: Optional[int] = None
    """Key/value heads for grouped-query attention; None means equal to the query heads."""
    kv_channels: Optional[int] = None
    """Head dimension for standard attention; None means hidden_size // num_attention_heads."""
    vocab_size: int = 512
    """Vocabulary size of the tokenizer (the embedding is padded for TP by the provider)."""
    max_position_embeddings: int = 4096
    """Longest sequence the rotary embedding is set up for."""
    norm_epsilon: float = 1e-6
    """RMSNorm epsilon."""
    add_qkv_bias: bool = False
    """Bias on the query/key/value projections (Qwen2)."""
    qk_layernorm: bool = False
    """Per-head RMSNorm of queries and keys before the rotary embedding (Qwen3's q_norm /
    k_norm; Megatron's q_layernorm / k_layernorm). Standard attention only: MLA always has
    its own latent norms."""
    tie_embeddings: bool = False
    """Share input embedding and output layer weights."""
    init_method_std: float = 0.02
    """Standard deviation of the normal weight initialisation for models built from scratch."""

    rotary_base: float = 10000.0
    """RoPE theta."""
    rope_type: str = "rope"
    """'rope' (plain rotary), 'llama3' (Llama 3.1 frequency scaling) or 'yarn' (DeepSeek-V3)."""
    rope_scaling_factor: float = 1.0
    """YaRN / Llama-3 scaling factor."""
    rope_original_max_position_embeddings: int = 4096
    """Context length the rope scaling was derived from (YaRN; Llama 3: 8192 in every release)."""
    rope_low_freq_factor: float = 1.0
    """Llama-3 rope scaling: wavelengths above original / low_freq_factor are divided by the factor."""
    rope_high_freq_factor: float = 4.0
    """Llama-3 rope scaling: wavelengths below original / high_freq_factor are kept; those
    between the two bounds are interpolated."""
    yarn_beta_fast: float = 32.0
    """YaRN beta_fast."""
    yarn_beta_slow: float = 1.0
    """YaRN beta_slow."""
    yarn_mscale: float = 1.0
    """YaRN mscale."""
    yarn_mscale_all_dim: float = 0.0
    """YaRN mscale_all_dim (DeepSeek-V3 uses 1.0 with factor 40)."""

    multi_latent_attention: bool = False
    """Use MLA (DeepSeek-V2/V3) instead of standard attention."""
    q_lora_rank: Optional[int] = None
    """MLA query compression rank; None means a plain query projection."""
    kv_lora_rank: int = 512
    """MLA key/value compression rank."""
    qk_head_dim: int = 128
    """MLA per-head query/key dimension without rope ('nope')."""
    qk_pos_emb_head_dim: int = 64
    """MLA per-head rope dimension."""
    v_head_dim: int = 128
    """MLA per-head value dimension."""

    num_experts: Optional[int] = None
    """Routed experts per MoE layer; None means a dense model."""
    moe_ffn_hidden_size: Optional[int] = None
    """Intermediate size of each routed expert."""
    moe_shared_expert_intermediate_size: Optional[int] = None
    """Total intermediate size of the shared expert(s); None means no shared expert."""
    moe_router_topk: int = 2
    """Experts per token."""
    first_k_dense_layers: int = 0
    """The first k layers use a dense MLP (DeepSeek-V3: 3)."""
    moe_router_score_function: str = "softmax"
    """'softmax' or 'sigmoid' (DeepSeek-V3)."""
    moe_router_norm_topk: bool = True
    """Renormalise the selected experts' routing weights to sum to 1 (HF ``norm_topk_prob``;
    Qwen3-MoE and DeepSeek-V3: true). For the softmax router false means the softmax over all
    experts, unnormalised (Megatron's ``moe_router_pre_softmax``); the sigmoid router always
    renormalises."""
    moe_router_enable_expert_bias: bool = False
    """Aux-loss-free balancing: a per-expert bias used only for expert selection."""
    moe_router_bias_update_rate: float = 1e-3
    """Step size of the expert-bias update."""
    moe_router_num_groups: Optional[int] = None
    """Node-limited routing: number of expert groups (DeepSeek-V3: 8)."""
    moe_router_group_topk: Optional[int] = None
    """Node-limited routing: groups each token may use (DeepSeek-V3: 4)."""
    moe_router_topk_scaling_factor: Optional[float] = None
    """Scale applied to the routing weights (DeepSeek-V3: 2.5)."""
    moe_aux_loss_coeff: float = 0.0
    """Load-balancing auxiliary loss coefficient (sequence-level for DeepSeek-V3)."""
    moe_grouped_gemm: bool = False
    """Use grouped GEMM for experts (TE spec on GPU)."""
    mtp_num_layers: int = 0
    """Multi-token-prediction layers (DeepSeek-V3 has 1; 0 disables). They live on the last
    pipeline stage; only the SFT loss trains them (see ``r1mega.models.mtp``)."""
    mtp_loss_scaling_factor: float = 0.1
    """Weight of the MTP loss next to the main loss, averaged over the MTP layers (DeepSeek-V3:
    0.3 for the first 10T tokens, then 0.1)."""

    extra: dict = field(default_factory=dict)
    """Family-specific Hugging Face config keys carried through conversion untouched."""

    @property
    def is_moe(self) -> bool:
        return self.num_experts is not None and self.num_experts > 0

    @property
    def head_dim(self) -> int:
        return self.kv_channels or self.hidden_size // self.num_attention_heads

    @property
    def kv_heads(self) -> int:
        return self.num_query_groups or self.num_attention_heads

    def validate(self, prefix: str = "model") -> None:
        """Raise ValueError naming the offending key; called once after all overrides."""
        if self.family not in FAMILIES:
            raise ConfigError(f"{prefix}.family={self.family!r} is not one of {FAMILIES}")
        if self.spec not in SPECS:
            raise ConfigError(f"{prefix}.spec={self.spec!r} is not one of {SPECS}")
        for key in ("num_layers", "hidden_size", "ffn_hidden_size", "num_attention_heads", "vocab_size"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"{prefix}.{key} must be positive, got {getattr(self, key)}")
        if not self.multi_latent_attention and self.kv_channels is None:
            if self.hidden_size % self.num_attention_heads:
                raise ConfigError(
                    f"{prefix}.hidden_size={self.hidden_size} is not divisible by "
                    f"{prefix}.num_attention_heads={self.num_attention_heads}; set {prefix}.kv_channels"
                )
        if self.num_attention_heads % self.kv_heads:
            raise ConfigError(
                f"{prefix}.num_attention_heads={self.num_attention_heads} is not divisible by "
                f"{prefix}.num_query_groups={self.num_query_groups}"
            )
        if self.rope_type == "llama3" and not (0 < self.rope_low_freq_factor < self.rope_high_freq_factor):
            raise ConfigError(f"{prefix}.rope_low_freq_factor={self.rope_low_freq_factor} and "
                             f"{prefix}.rope_high_freq_factor={self.rope_high_freq_factor} must satisfy 0 < low < high")
        if self.qk_layernorm and self.multi_latent_attention:
            raise ConfigError(f"{prefix}.qk_layernorm=true is for standard attention; MLA "
                             f"({prefix}.multi_latent_attention=true) has its own latent norms")
        if self.rope_type not in ("rope", "llama3", "yarn"):
            raise ConfigError(f"{prefix}.rope_type={self.rope_type!r} is not one of rope, llama3, yarn")
        if self.is_moe:
            self._validate_moe(prefix)
        if self.mtp_num_layers < 0:
            raise ConfigError(f"{prefix}.mtp_num_layers={self.mtp_num_layers} must be >= 0")
        if self.mtp_loss_scaling_factor < 0:
            raise ConfigError(f"{prefix}.mtp_loss_scaling_factor={self.mtp_loss_scaling_factor} must be >= 0")
        if not 0 <= self.first_k_dense_layers <= self.num_layers:
            raise ConfigError(f"{prefix}.first_k_dense_layers={self.first_k_dense_layers} is outside [0, num_layers]")

    def _validate_moe(self, prefix: str) -> None:
        if self.moe_ffn_hidden_size is None:
            raise ConfigError(f"{prefix}.moe_ffn_hidden_size must be set when {prefix}.num_experts is set")
        if not 1 <= self.moe_router_topk <= self.num_experts:
            raise ConfigError(f"{prefix}.moe_router_topk={self.moe_router_topk} must be in [1, num_experts={self.num_experts}]")
        if self.moe_router_score_function not in ("softmax", "sigmoid"):
            raise ConfigError(f"{prefix}.moe_router_score_function={self.moe_router_score_function!r} is not softmax or sigmoid")
        if self.moe_router_score_function == "sigmoid" and not self.moe_router_norm_topk:
            raise ConfigError(f"{prefix}.moe_router_norm_topk=false needs {prefix}.moe_router_score_function=softmax "
                             "(Megatron's sigmoid router always renormalises the top-k weights)")
        if self.moe_router_num_groups:
            if self.num_experts % self.moe_router_num_groups:
                raise ConfigError(
                    f"{prefix}.num_experts={self.num_experts} is not divisible by "
                    f"{prefix}.moe_router_num_groups={self.moe_router_num_groups}"
                )
            if not self.moe_router_group_topk or self.moe_router_group_topk > self.moe_router_num_groups:
                raise ConfigError(f"{prefix}.moe_router_group_topk must be in [1, moe_router_num_groups]")

    def moe_layer_pattern(self) -> list[int]:
        """Megatron's ``moe_layer_freq`` list: 0 for a dense layer, 1 for a MoE layer."""
        return [0 if i < self.first_k_dense_layers else 1 for i in range(self.num_layers)]
