"""r1mega-plan: overrides, output, exit status."""

import json

import pytest

from r1mega.cli import plan as cli
from r1mega.models.params import count_parameters
from r1mega.plan.overrides import plan_from_overrides

RECIPE = [
    "model=deepseek_v3", "nodes=32", "gpus_per_node=8", "gpu=h100", "parallel.pp=16", "parallel.ep=16",
    "first_stage_layers=3", "last_stage_layers=2", "seq_length=1536", "global_batch_size=512",
    "recompute=full", "rollout=sleep",
]


def test_fitting_plan_prints_table_and_exits_0(capsys):
    assert cli.main(RECIPE) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("deepseek_v3 on 32 x 8 H100 80GB: tp=1 pp=16 ep=16")
    assert "stage 0" in out and "stage 1" in out and "stage 15" in out
    assert out.rstrip().splitlines()[-1].startswith("capacity 79.65 GiB: FITS (peak stage 1,")


def test_plan_that_does_not_fit_exits_1(capsys):
    assert cli.main(RECIPE + ["nodes=2", "parallel.ep=1"]) == 1
    assert "DOES NOT FIT" in capsys.readouterr().out


def test_invalid_plan_exits_2_with_one_line_naming_the_key(capsys):
    assert cli.main(RECIPE + ["parallel.tp=x"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "parallel.tp" in err and "Traceback" not in err
    assert cli.main(["gpu=v100"]) == 2
    assert "gpu='v100'" in capsys.readouterr().err


def test_json_output(capsys):
    assert cli.main(RECIPE + ["--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["fits"] is True and data["peak_stage"] == 1
    assert data["layout"] == {"tp": 1, "pp": 16, "vpp": None, "ep": 16, "etp": 1, "cp": 1, "dp": 16,
                              "expert_dp": 1, "sequence_parallel": False}
    assert len(data["stages"]) == 16 and data["microbatches"] == 32


def test_training_keys_and_plan_prefix_are_understood():
    plan, model = plan_from_overrides([
        "model=qwen2_5_7b", "model.num_layers=4", "trainer.micro_batch_size=2", "trainer.global_batch_size=64",
        "data.seq_length=8192", "trainer.precision.fp8=e4m3", "plan.recompute=full", "plan.gpu=h200",
    ])
    assert (plan.micro_batch_size, plan.global_batch_size, plan.seq_length) == (2, 64, 8192)
    assert plan.fp8 is True and plan.recompute == "full" and plan.gpu == "h200"
    plan, _ = plan_from_overrides(["trainer.precision.dtype=auto"])
    assert plan.dtype == "bf16"
    assert model.name == "qwen2_5_7b" and model.num_layers == 4


def test_unknown_keys_are_errors_only_when_strict():
    with pytest.raises(ValueError, match="unknown planner key 'optim.lr'"):
        plan_from_overrides(["optim.lr=1e-5"])
    plan, _ = plan_from_overrides(["optim.lr=1e-5", "stage=sft"], strict=False)
    assert plan.seq_length == 4096
    with pytest.raises(ValueError, match="unknown model key"):
        plan_from_overrides(["model.hidden=3"])


@pytest.mark.parametrize("model,layout,dense_split,expert_split", [
    ("qwen3_30b_a3b", ["parallel.ep=8"], 1, 8),  # dp 8 over the dense part, experts split 8 ways
    ("qwen3_8b", ["parallel.tp=2"], 2, 1),
])
def test_qwen3_models_are_planned_from_their_parameter_counts(capsys, model, layout, dense_split, expert_split):
    """Stage 0 of a one-stage plan holds the whole model: its parameter count is the counted
    total with the routed experts divided over EP (and TP-split tensors over TP; the tiny
    replicated rest -- norms, router -- is held whole and kept within 0.1% here)."""
    from r1mega.plan.sources import load_model

    cli.main([f"model={model}", "nodes=1", "gpus_per_node=8", "gpu=h100", "seq_length=4096",
              "global_batch_size=128", "recompute=full", "rollout=sleep", *layout, "--json"])
    data = json.loads(capsys.readouterr().out)
    assert data["model"] == model and data["layout"]["pp"] == 1
    c = count_parameters(load_model(model))
    expected = (c["total"] - c["moe_experts"]) / dense_split + c["moe_experts"] / expert_split
    assert data["stages"][0]["params"] == pytest.approx(expected, rel=1e-3)
