"""Model states per GPU: parameters, gradients and optimizer states of one pipeline stage.

Each parameter is sharded by the dimensions that split it in Megatron-Core:

=========================================  ==============================================
kind                                        held per rank
=========================================  ==============================================
attention projections, dense MLP,           ``1 / tp`` (column/row parallel linears)
shared expert, MTP projection
MLA down projections, norms, MoE router     replicated on every TP rank
routed experts                              ``num_experts / ep`` experts, each ``1 / etp``
input embedding, output layer               ``padded_vocab / tp`` rows, on the first / last
                                            stage only (a tied embedding is kept on both)
=========================================  ==============================================

Bytes per parameter (mixed precision with Megatron's distributed optimizer):

* weights: 2 (bf16; 4 for fp32), plus 1 for the FP8 weight cache of GEMM weights with fp8;
* gradients: 4 (the fp32 main-grad buffer; 2 with ``grad_dtype=bf16``), not sharded;
* optimizer: 4 (fp32 master copy) + 2 x 4 (Adam m and v; 2 x 2 in bf16), divided by the
  ranks the distributed optimizer shards over: the data-parallel ranks (``dp x cp``) for
  dense parameters and the expert-data-parallel ranks for experts. Without the distributed
  optimizer every rank keeps all of them (the 16- or 18-bytes-per-parameter rule).
"""

from __future__ import annotations

from dataclasses import dataclass

from r1mega.models.config import ModelConfig
from r1mega.models.params import attention_params, dense_mlp_params, moe_params
from r1mega.models.provider import padded_vocab_size
from r1mega.parallel.dims import ParallelDims
from r1mega.plan.config import PlanConfig
from r1mega.plan.layout import Stage


@dataclass(frozen=True)
class StageParams:
    """Parameters one rank of a stage holds, by how the optimizer shards them."""

    dense: float
    """Non-expert parameters on this rank (sharded over data-parallel ranks)."""
    expert: float
    """Routed-expert parameters on this rank (sharded over expert-data-parallel ranks)."""
    gemm_fraction: float
    """Share of the parameters that are GEMM weights (get an FP8 cache)."""

    @property
    def total(self) -> float:
        return self.dense + self.expert


def _layer_dense(m: ModelConfig, tp: int, moe: bool) -> tuple[float, float]:
    """(parameters on one TP rank, of which GEMM weights) for one layer's non-expert part."""
    attn = attention_params(m)
    norms = 2 * m.hidden_size  # input and pre-MLP RMSNorm
    if m.multi_latent_attention:
        norms += m.kv_lora_rank + (m.q_lora_rank or 0)
    per = attn["tp_split"] / tp + attn["replicated"] + m.hidden_size
    if moe:
        p = moe_params(m)
        per += p["router"] + p["shared"] / tp
        return per, per - norms - p["router"]
    per += dense_mlp_params(m) / tp
    return per, per - norms


def _layer_experts(m: ModelConfig, dims: ParallelDims) -> float:
    p = moe_params(m)
    return (m.num_experts // dims.ep) * p["expert"] / dims.etp if m.is_moe else 0.0


def stage_params(m: ModelConfig, dims: ParallelDims, stage: Stage) -> StageParams:
    """Parameters of one rank of ``stage``."""
    tp = dims.tp
    dense_d, gemm_d = _layer_dense(m, tp, moe=False)
    dense_m, gemm_m = _layer_dense(m, tp, moe=True) if m.is_moe else (0.0, 0.0)
    experts = _layer_experts(m, dims)
    dense = stage.dense_layers * dense_d + stage.moe_layers * dense_m
    gemm = stage.dense_layers * gemm_d + stage.moe_layers * gemm_m
    expert = stage.moe_layers * experts
    vocab_rows = padded_vocab_size(m.vocab_size, tp) / tp * m.hidden_size
    if stage.pre_process:
        dense += vocab_rows
    if stage.post_process:
        head = vocab_rows if (not m.tie_embeddings or not stage.pre_process) else 0.0
        dense += head + m.hidden_size
        gemm += head
        mtp_dense, mtp_gemm, mtp_expert = _mtp(m, dims)
        dense, gemm, expert = dense + mtp_dense, gemm + mtp_gemm, expert + mtp_expert
    gemm += expert
    total = dense + expert
    return StageParams(dense, expert, gemm / total if total else 0.0)


def _mtp(m: ModelConfig, dims: ParallelDims) -> tuple[float, float, float]:
    """(dense, GEMM, expert) parameters of the MTP layers, which sit on the last stage."""
    if not m.mtp_num_layers:
        return 0.0, 0.0, 0.0
    h, tp = m.hidden_size, dims.tp
    dense, gemm = _layer_dense(m, tp, moe=m.is_moe)
    proj = 2 * h * h / tp
    n = m.mtp_num_layers
    return n * (dense + proj + 3 * h), n * (gemm + proj), n * _layer_experts(m, dims)


@dataclass(frozen=True)
class StateBytes:
    """Bytes of model states on one rank."""

    weights: float
    grads: float
    optimizer: float
    step_temp: float
    """Transient memory of the optimizer step (activations are freed by then)."""


def state_bytes(plan: PlanConfig, dims: ParallelDims, params: StageParams) -> StateBytes:
    """Weights, gradients and optimizer states of one rank, in bytes."""
    wb = 4.0 if plan.dtype == "fp32" else 2.0
    weights = params.total * wb
    if plan.fp8 and not plan.fp8_param:
        weights += params.total * params.gemm_fraction  # the FP8 copy of each GEMM weight
    grads = params.total * (4.0 if plan.grad_dtype == "fp32" else 2.0)
    moment = 4.0 if plan.optimizer_state_dtype == "fp32" else 2.0
    master = 4.0 if plan.master_weights and plan.dtype != "fp32" else 0.0
    per_param = master + 2 * moment
    shard = params.total
    if plan.parallel.distributed_optimizer:
        shard = params.dense / (dims.dp * dims.cp) + params.expert / dims.expert_dp
    return StateBytes(weights, grads, per_param * shard, plan.optimizer_step_temp_bytes * shard)
