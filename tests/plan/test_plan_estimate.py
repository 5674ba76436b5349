"""The memory estimate: known recipes, component values, and the formulas' scaling rules."""

import dataclasses

import pytest

from r1mega.models.params import count_parameters
from r1mega.parallel.config import ParallelConfig
from r1mega.parallel.dims import ParallelDims
from r1mega.plan import activations as act
from r1mega.plan.config import PlanConfig
from r1mega.plan.estimate import estimate
from r1mega.plan.gpus import GIB
from r1mega.plan.layout import in_flight_chunks, stage_layer_counts
from r1mega.plan.sources import load_model

DSV3 = load_model("deepseek_v3")


def grpo_recipe(**kw) -> PlanConfig:
    """NeMo-RL's DeepSeek-V3 GRPO recipe (grpo-deepseek-v3-32n8g): 32 nodes x 8 H100,
    TP1 PP16 EP16, 3 + 14x4 + 2 layers, full recompute, 1536 tokens, colocated vLLM asleep."""
    base = dict(
        model="deepseek_v3", nodes=32, gpus_per_node=8, gpu="h100",
        parallel=ParallelConfig(tp=1, pp=16, ep=16), first_stage_layers=3, last_stage_layers=2,
        seq_length=1536, micro_batch_size=1, global_batch_size=512, recompute="full", rollout="sleep",
    )
    base.update(kw)
    return PlanConfig(**base)


def test_deepseek_v3_grpo_fits_on_256_h100():
    est = estimate(grpo_recipe(), DSV3)
    assert est.fits
    assert est.dims.dp == 16 and est.dims.expert_dp == 1
    assert est.microbatches == 512 // 16
    assert [s.stage.num_layers for s in est.stages] == [3] + [4] * 14 + [2]
    assert est.peak.stage.index == 1  # 4 MoE layers and 15 micro-batches in flight
    assert 50 < est.peak.total / GIB < 70


def test_deepseek_v3_middle_stage_components():
    est = estimate(grpo_recipe(), DSV3)
    s = est.stages[1]
    h, a = 7168, 128
    attn = (7168 * 1536 + 1536 + 1536 * a * 192 + 7168 * 576 + 512 + 512 * a * 256 + a * 128 * h + h)
    dense_layer = attn + h + 256 * h + 3 * h * 2048  # + pre-MLP norm, router, shared expert
    experts_layer = 16 * 3 * h * 2048  # 256 experts / ep16
    dense, expert = 4 * dense_layer, 4 * experts_layer
    assert s.params == pytest.approx(dense + expert)
    assert s.weights == pytest.approx(2 * (dense + expert))
    assert s.grads == pytest.approx(4 * (dense + expert))
    assert s.optimizer == pytest.approx(12 * (dense / 16 + expert / 1))
    assert s.in_flight == 15
    assert s.rollout == pytest.approx(1.0 * GIB)
    assert s.overhead == pytest.approx(4.0 * GIB)


def test_deepseek_v3_first_and_last_stage_hold_embedding_and_head():
    est = estimate(grpo_recipe(), DSV3)
    first, last = est.stages[0], est.stages[-1]
    vocab = 129280 * 7168  # 129280 is already a multiple of 128
    assert first.stage.dense_layers == 3 and first.in_flight == 16
    assert first.params == pytest.approx(3 * count_parameters(DSV3)["dense_layer"] + vocab)
    assert last.stage.post_process and last.in_flight == 1
    # last stage: 2 MoE layers + output layer + final norm + the MTP layer
    assert last.params > 2 * 0.93e9 + vocab


def test_deepseek_v3_does_not_fit_on_16_h100():
    with pytest.raises(ValueError, match=r"parallel.ep\*etp = 16\*1 must divide"):
        estimate(grpo_recipe(nodes=2), DSV3)
    est = estimate(grpo_recipe(nodes=2, parallel=ParallelConfig(tp=1, pp=16, ep=1)), DSV3)
    assert not est.fits
    assert est.peak.total / GIB > 500


@pytest.mark.parametrize("change", [dict(recompute="none"), dict(rollout="colocated"), dict(nodes=16, parallel=ParallelConfig(pp=16, ep=8))])
def test_deepseek_v3_recipe_breaks_without_its_memory_savers(change):
    assert not estimate(grpo_recipe(**change), DSV3).fits


def test_h200_has_more_room_than_h100():
    h100 = estimate(grpo_recipe(), DSV3)
    h200 = estimate(grpo_recipe(gpu="h200"), DSV3)
    assert h200.peak.total == pytest.approx(h100.peak.total)
    assert h200.headroom_gib - h100.headroom_gib == pytest.approx((143771 - 81559) / 1024)


def test_uneven_split_is_checked_with_key_names():
    with pytest.raises(ValueError, match="first_stage_layers"):
        stage_layer_counts(grpo_recipe(first_stage_layers=4), DSV3)
    with pytest.raises(ValueError, match=r"model.num_layers=61 cannot be split evenly into parallel.pp=16"):
        estimate(grpo_recipe(first_stage_layers=None, last_stage_layers=None), DSV3)


def test_in_flight_micro_batches_follow_megatron_schedules():
    dims = ParallelDims.resolve(ParallelConfig(pp=4), 8)
    assert [in_flight_chunks(r, dims, 16) for r in range(4)] == [4, 3, 2, 1]
    assert in_flight_chunks(0, dims, 2) == 2  # no more than the step has
    inter = ParallelDims.resolve(ParallelConfig(pp=4, vpp=2), 8)
    # 2 (pp - 1) + (vpp - 1) pp + 1 = 11 chunks of half a stage
    assert in_flight_chunks(0, inter, 16) == pytest.approx(5.5)
    assert in_flight_chunks(0, ParallelDims.resolve(ParallelConfig(), 8), 16) == 1


QWEN7 = load_model("qwen2_5_7b")


def _dims(tp=1, sp=None, cp=1):
    return ParallelDims.resolve(ParallelConfig(tp=tp, sequence_parallel=sp, cp=cp), 8)


def test_dense_layer_activations_by_hand():
    plan = PlanConfig(model="qwen2_5_7b", seq_length=4096, micro_batch_size=2)
    h, f, a, kv, d = 3584, 18944, 28, 4, 128
    # norm inputs, norm outputs, Q/K/V, attention output; SwiGLU: fc1 output (2f), silu (f),
    # up + offset (f), fc2 input (f)
    per_token = 2 * (2 * h + 2 * h + (a + 2 * kv) * d + a * d + 5 * f)
    assert act.layer_bytes(QWEN7, plan, _dims(), moe=False) == 4096 * 2 * per_token
    fused = dataclasses.replace(plan, fused_swiglu=True)
    assert act.layer_bytes(QWEN7, fused, _dims(), moe=False) == 4096 * 2 * (per_token - 2 * 2 * f)
    local = dataclasses.replace(plan, spec="local")
    assert act.layer_bytes(QWEN7, local, _dims(), moe=False) == 4096 * 2 * (per_token + 2 * (2 * (a - kv) * d + a * d))


def test_optimizer_step_temporaries_compete_with_activations():
    base = estimate(grpo_recipe(), DSV3).stages[1]
    torch_adam = estimate(grpo_recipe(optimizer_step_temp_bytes=4.0), DSV3).stages[1]
    assert torch_adam.step_temp == pytest.approx(base.optimizer / 3)  # 4 of the 12 bytes, same shard
    states = base.weights + base.grads + base.optimizer
    assert base.allocated == pytest.approx(states + base.activations)
    assert torch_adam.allocated == pytest.approx(states + max(base.activations, torch_adam.step_temp))


def test_activation_scaling_rules():
    plan = PlanConfig(model="qwen2_5_7b", seq_length=4096)
    one = act.layer_bytes(QWEN7, plan, _dims(), moe=False)
    assert act.layer_bytes(QWEN7, plan, _dims(tp=2, sp=True), moe=False) == pytest.approx(one / 2)
    assert act.layer_bytes(QWEN7, plan, _dims(tp=2, sp=False), moe=False) > one / 2
    assert act.layer_input_bytes(QWEN7, plan, _dims(tp=2, sp=True)) == 4096 * 3584 * 2 / 2
    unfused = dataclasses.replace(plan, flash_attention=False)
    extra = act.layer_bytes(QWEN7, unfused, _dims(), moe=False) - one
    assert extra == pytest.approx(2 * 28 * 4096 * 4096)  # the softmax, 2 a s^2 b bytes
    selective = dataclasses.replace(unfused, recompute="selective", recompute_modules=["core_attn"])
    assert act.layer_bytes(QWEN7, selective, _dims(), moe=False) == pytest.approx(one)


def test_fp8_and_bf16_moments_shrink_memory():
    base = estimate(grpo_recipe(), DSV3).stages[1]
    moments = estimate(grpo_recipe(optimizer_state_dtype="bf16"), DSV3).stages[1]
    assert moments.optimizer == pytest.approx(base.optimizer * 8 / 12)
    fp8 = estimate(grpo_recipe(fp8=True), DSV3).stages[1]
    assert fp8.weights > base.weights  # FP8 weight caches
    assert fp8.activations < base.activations  # 1-byte GEMM inputs
