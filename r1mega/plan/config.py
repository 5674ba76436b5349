"""``PlanConfig``: every input of the memory estimate, with its default and its unit.

The defaults describe a plain Megatron-Core bf16 run: bf16 weights, fp32 gradient buffers
(Megatron accumulates and reduces bf16 gradients in fp32), fp32 master weights and fp32 Adam
moments sharded over data-parallel ranks (the distributed optimizer), flash attention, no
activation recompute, no rollout engine on the GPU.

Everything the planner cannot know from the model and the layout is a field here: how long
the sequences are, how much memory the colocated vLLM engine keeps, how much the CUDA
context and NCCL take. ``validate()`` raises ValueError naming the key, as ``r1mega-plan``
users write it (``seq_length``, ``parallel.tp``, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from r1mega.config.errors import ConfigError
from r1mega.parallel.config import ParallelConfig
from r1mega.plan.gpus import GPUS

RECOMPUTE = ("none", "selective", "full")
RECOMPUTE_MODULES = ("core_attn", "layernorm", "mla_up_proj", "mlp", "moe_act", "moe", "shared_experts")
ROLLOUT = ("none", "colocated", "sleep")
DTYPES = ("bf16", "fp32")
STATE_DTYPES = ("fp32", "bf16")


@dataclass
class PlanConfig:
    """What to estimate: model, layout, batch, precision, optimizer, recompute, GPU."""

    model: str = "deepseek_v3_tiny"
    """A name from conf/model/ or a path to a model YAML."""
    nodes: int = 1
    """Nodes in the job."""
    gpus_per_node: int = 8
    """GPUs per node; the world size is nodes * gpus_per_node."""
    gpu: str = "h100"
    """GPU type: h100 (80 GB), h200 (141 GB), a100 (80 GB)."""
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    """The parallel layout, with the same keys as r1mega-train's parallel group."""
    first_stage_layers: Optional[int] = None
    """Decoder layers on the first pipeline stage when the split is uneven (Megatron's
    num_layers_in_first_pipeline_stage); None splits evenly."""
    last_stage_layers: Optional[int] = None
    """Decoder layers on the last pipeline stage when the split is uneven
    (num_layers_in_last_pipeline_stage); None splits evenly."""

    micro_batch_size: int = 1
    """Sequences per micro-batch."""
    global_batch_size: Optional[int] = None
    """Sequences per optimizer step; sets the number of micro-batches. None assumes enough
    micro-batches to fill the pipeline."""
    seq_length: int = 4096
    """Tokens per sequence (prompt + response for RL, padded or packed length)."""

    dtype: str = "bf16"
    """Parameter and activation dtype: bf16 or fp32."""
    fp8: bool = False
    """FP8 GEMMs (Transformer Engine): GEMM inputs are saved in 1 byte, and an FP8 copy of each
    GEMM weight is cached next to the bf16 one."""
    fp8_param: bool = False
    """Keep the primary weights in FP8 (1 byte + 1 byte transpose cache instead of 2 + 1)."""
    grad_dtype: str = "fp32"
    """Dtype of the gradient buffer; Megatron accumulates bf16 gradients in fp32."""
    optimizer_step_temp_bytes: float = 0.0
    """Transient bytes per (sharded) parameter during the optimizer step: 0 for TE/Apex
    FusedAdam, about 4 for torch.optim.AdamW (foreach), Megatron's fallback without them."""
    master_weights: bool = True
    """Keep fp32 master weights in the optimizer (always true in Megatron's mixed precision)."""
    optimizer_state_dtype: str = "fp32"
    """Dtype of Adam's two moments: fp32, or bf16 (Megatron's precision-aware optimizer)."""

    recompute: str = "none"
    """Activation recompute: none, selective (the modules in recompute_modules) or full
    (keep only each layer's input; recompute the layer in the backward pass)."""
    recompute_modules: list[str] = field(
        default_factory=lambda: ["core_attn", "layernorm", "mla_up_proj", "moe_act"]
    )
    """Megatron recompute_modules used by recompute=selective."""
    flash_attention: bool = True
    """Fused attention (TE / flash / SDPA) that never stores the s x s score matrix."""
    spec: str = "te"
    """Layer implementation the job builds: te (Transformer Engine) or local (Megatron's local
    modules with r1mega's SDPA core attention, which expands GQA keys/values to every head
    and keeps a second copy of the attention output)."""
    fused_swiglu: bool = False
    """Megatron's fused bias-SwiGLU (bias_activation_fusion): keeps the fc1 output (2f) and
    the fc2 input (f) per token instead of 5f. r1mega's provider leaves it off."""
    moe_imbalance: float = 1.0
    """Tokens the busiest expert rank receives relative to a perfectly balanced router."""
    logits_bytes: float = 6.0
    """Bytes per logit at the last stage's peak: the bf16 output-layer logits and their fp32
    copy, whose softmax Megatron's vocab-parallel cross-entropy keeps for the backward."""

    rollout: str = "none"
    """The rollout engine on the same GPUs: none, colocated (keeps
    rollout_gpu_memory_utilization of the GPU while training) or sleep (vLLM sleep mode: frees
    its weights and KV cache during training, keeps rollout_sleep_residual_gib)."""
    rollout_gpu_memory_utilization: float = 0.3
    """Fraction of the GPU the colocated engine holds (vLLM's gpu_memory_utilization)."""
    rollout_sleep_residual_gib: float = 1.0
    """GiB a sleeping engine still holds (CUDA graphs, its allocator's pool)."""
    reference_on_gpu: bool = False
    """Keep the GRPO reference policy's weights on the GPU (one more bf16 copy of the shard)."""
    overhead_gib: float = 4.0
    """CUDA context, NCCL communicator buffers, cuBLAS/TE workspaces and allocator
    fragmentation: memory that torch.cuda.max_memory_allocated does not show."""

    def validate(self) -> "PlanConfig":
        """Raise ValueError naming the first bad key; return self."""
        for key in ("nodes", "gpus_per_node", "micro_batch_size", "seq_length"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.gpu not in GPUS:
            raise ConfigError(f"gpu={self.gpu!r} is not one of {sorted(GPUS)}")
        _choice("dtype", self.dtype, DTYPES)
        _choice("grad_dtype", self.grad_dtype, STATE_DTYPES)
        _choice("optimizer_state_dtype", self.optimizer_state_dtype, STATE_DTYPES)
        _choice("recompute", self.recompute, RECOMPUTE)
        _choice("rollout", self.rollout, ROLLOUT)
        _choice("spec", self.spec, ("te", "local"))
        bad = sorted(set(self.recompute_modules) - set(RECOMPUTE_MODULES))
        if bad:
            raise ConfigError(f"recompute_modules has unknown module(s) {bad}; choices: {list(RECOMPUTE_MODULES)}")
        if self.fp8_param and not self.fp8:
            raise ConfigError("fp8_param=true needs fp8=true")
        if self.fp8 and self.dtype != "bf16":
            raise ConfigError("fp8=true needs dtype=bf16")
        if not 0.0 <= self.rollout_gpu_memory_utilization < 1.0:
            raise ConfigError(f"rollout_gpu_memory_utilization must be in [0, 1), got {self.rollout_gpu_memory_utilization}")
        if self.moe_imbalance < 1.0:
            raise ConfigError(f"moe_imbalance must be >= 1, got {self.moe_imbalance}")
        if self.global_batch_size is not None and self.global_batch_size < 1:
            raise ConfigError(f"global_batch_size must be >= 1, got {self.global_batch_size}")
        return self

    @property
    def world_size(self) -> int:
        return self.nodes * self.gpus_per_node


def _choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{key}={value!r} is not one of {list(choices)}")


def field_docs(cls: type) -> dict[str, str]:
    """``{field: first line of its docstring}`` for a dataclass written in this house style
    (a string literal right below each field), read from the source with ``ast``."""
    import ast
    import inspect
    import textwrap

    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body
    docs: dict[str, str] = {}
    for node, nxt in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
            docs[node.target.id] = " ".join(str(nxt.value.value).split())
    return docs
