"""GRPO gives the same losses at every parallel layout, and resumes across layouts.

Protocol (``tests/parallel/grpo_runs.py``): one recording run at TP=PP=EP=1 writes its
rollouts and initial weights; the rewards are rewritten so every group has signal; a replay at
TP=PP=EP=1 is the reference; replays at PP=2, EP=2, DP=2 (deepseek_v3_tiny: MLA + MoE with
a dense first layer) and TP=2 with sequence parallelism (tiny_dense, see below) on two gloo
ranks must reproduce its per-step loss, gradient norm, policy-gradient loss, reference KL,
entropy and importance ratio. Two PPO epochs per step make the second update off-policy
(ratios != 1, clipping active), rl.kl_beta adds the reference model, rl.entropy_coef the
entropy term. Checkpoints written at step 2 of the EP=2 (resp. TP=2) run are resumed at PP=2
(resp. TP=1), and steps 3-4 must again match the uninterrupted reference.

Tolerances (fp32 on CPU): 1e-5 absolute on losses, KL and entropy (values of order 0.01-6)
and 1e-4 relative on the gradient norm. A layout only reorders fp32 reductions (partial
matmul sums + all-reduce over TP, gradient all-reduce over DP, per-expert token order under
EP); each costs a few ulps (~1e-7 relative), and Adam turns a relative gradient error e into
a parameter error of ~lr*e, so four steps stay near 1e-7: measured 1e-8 (loss) and 1e-7
(grad norm) at PP=2, EP=2 and DP=2. A missing reduction is 100x above the bound: the MLA
local-spec TP bug below shows 3e-3 on the loss and 1e-2 on the grad norm.

Why TP=2 runs on the dense model. Megatron-Core's local-spec MLA (``linear_kv_down_proj`` a
ColumnParallelLinear) does not sum the gradient of the shared RoPE key over TP ranks
(NVIDIA/Megatron-LM#1699), so MLA at TP>1 trains differently on CPU by design of upstream
code; the Transformer Engine spec (GPU) takes the duplicated-linear path, which is correct,
and ``tools/device/multigpu_grpo.sh`` checks deepseek_v3_tiny at TP=2 there.
"""

from __future__ import annotations

import shutil

import pytest

from tests.parallel.grpo_runs import COMPARED, compare, train, vary_rewards

pytestmark = pytest.mark.slow

STEPS = 4
COMMON = [
    "stage=r1_zero", "trainer.progress=false", "trainer.plots=false", "trainer.global_batch_size=16",
    "trainer.micro_batch_size=4", "rl.group_size=4", "rollout.max_tokens=12", "evaluation.k=1",
    "evaluation.max_tokens=2", "data.synthetic.num_train=64", "data.synthetic.num_test=2",
    "trainer.save_interval=0", f"trainer.max_steps={STEPS}", f"optim.decay_steps={2 * STEPS}",
    "optim.warmup_steps=2", "rl.ppo_epochs=2", "rl.kl_beta=0.01", "rl.entropy_coef=0.01",
    "reward.num_workers=1",
]
LOSS_TOL, GRAD_REL_TOL = 1e-5, 1e-4


class Family:
    """A recording + reference replay of one model; replays at other layouts on demand."""

    def __init__(self, root, model):
        self.root, self.model = root, model
        self.record = root / "record"
        train([*COMMON, f"model={model}", f"rl.record_dir={self.record}"], root / "record_run")
        assert vary_rewards(self.record, 4) == STEPS
        self.replay_args = [*COMMON, f"model={model}", f"rl.replay_dir={self.record}",
                            f"trainer.init_from={self.record / 'init'}"]
        self.ref = train(self.replay_args, root / "reference")

    def replay(self, name, layout, nproc=2, extra=()):
        return train([*self.replay_args, *layout, *extra], self.root / name, nproc=nproc)


@pytest.fixture(scope="module")
def moe(tmp_path_factory):
    return Family(tmp_path_factory.mktemp("moe"), "deepseek_v3_tiny")


@pytest.fixture(scope="module")
def dense(tmp_path_factory):
    return Family(tmp_path_factory.mktemp("dense"), "tiny_dense")


def _assert_matches(rows, ref, steps=None):
    diffs = compare(rows, ref, steps)
    for key in COMPARED:
        assert diffs[key] <= LOSS_TOL, (key, diffs)
    assert diffs["grad_norm_rel"] <= GRAD_REL_TOL, diffs
    return diffs


def test_reference_is_not_trivial(moe, dense):
    # The comparison is between real training signals: a policy-gradient loss, a reference KL
    # and a gradient that are far from zero after the first update.
    for fam in (moe, dense):
        assert [r["step"] for r in fam.ref] == list(range(1, STEPS + 1))
        assert max(abs(r["actor_pg_loss"]) for r in fam.ref) > 1e-2
        assert max(r["kl_ref"] for r in fam.ref[1:]) > 1e-3
        assert min(r["grad_norm"] for r in fam.ref) > 1e-2
        assert min(r["actor_ratio_max"] for r in fam.ref[1:]) > 1.0  # off-policy second update


@pytest.mark.parametrize("name,layout", [("pp2", ["parallel.pp=2"]), ("dp2", [])], ids=["pp2", "dp2"])
def test_moe_layout_matches_reference(moe, name, layout):
    _assert_matches(moe.replay(name, layout), moe.ref)


def test_moe_ep2_matches_and_resumes_at_pp2(moe):
    rows = moe.replay("ep2", ["parallel.ep=2"], extra=["trainer.save_interval=2"])
    _assert_matches(rows, moe.ref)
    ckpt = moe.root / "ep2_step2"
    shutil.copytree(moe.root / "ep2" / "checkpoints" / "iter_0000002", ckpt / "iter_0000002")
    resumed = moe.replay("pp2_resumed", ["parallel.pp=2"], extra=[f"trainer.checkpoint_dir={ckpt}"])
    assert [r["step"] for r in resumed] == [3, 4]
    _assert_matches(resumed, moe.ref, steps=[3, 4])


def test_dense_tp2_sequence_parallel_matches_and_resumes_at_tp1(dense):
    rows = dense.replay("tp2", ["parallel.tp=2", "parallel.sequence_parallel=true"],
                        extra=["trainer.save_interval=2"])
    _assert_matches(rows, dense.ref)
    ckpt = dense.root / "tp2_step2"
    shutil.copytree(dense.root / "tp2" / "checkpoints" / "iter_0000002", ckpt / "iter_0000002")
    resumed = dense.replay("tp1_resumed", [], nproc=1, extra=[f"trainer.checkpoint_dir={ckpt}"])
    assert [r["step"] for r in resumed] == [3, 4]
    _assert_matches(resumed, dense.ref, steps=[3, 4])


# Packed sequences (trainer.max_tokens_per_microbatch): rows are dealt to DP ranks by token
# count and packed into THD micro-batches. The dense model computes the same function either
# way, so packed runs must match the padded reference within the tolerances above. The MoE
# model's padded rows route their padding (it counts in the load-balancing loss and moves the
# expert biases), so its packed runs are compared with a packed single-process reference.
PACKED = ["trainer.max_tokens_per_microbatch=256"]


@pytest.mark.parametrize("name,layout", [("dp2", []), ("tp2", ["parallel.tp=2", "parallel.sequence_parallel=true"])],
                         ids=["dp2", "tp2-sp"])
def test_dense_packed_matches_padded_reference(dense, name, layout):
    _assert_matches(dense.replay(f"packed_{name}", layout, extra=PACKED), dense.ref)


@pytest.fixture(scope="module")
def moe_packed_ref(moe):
    return moe.replay("packed_ref", [], nproc=1, extra=PACKED)


def test_moe_packed_reference_is_close_to_padded(moe, moe_packed_ref):
    # the two differ only through the routed padding: far below the loss scale, far above ulps
    diffs = compare(moe_packed_ref, moe.ref)
    assert diffs["loss"] < 1e-2 and diffs["grad_norm_rel"] < 1e-1, diffs


@pytest.mark.parametrize("name,layout", [("pp2", ["parallel.pp=2"]), ("ep2", ["parallel.ep=2"])], ids=["pp2", "ep2"])
def test_moe_packed_layout_matches_packed_reference(moe, moe_packed_ref, name, layout):
    _assert_matches(moe.replay(f"packed_{name}", layout, extra=PACKED), moe_packed_ref)
