"""count_parameters against published model sizes and against a model Megatron-Core builds."""

import subprocess
import sys
from pathlib import Path

import pytest

from r1mega.models.params import count_parameters
from r1mega.plan.sources import load_model

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "name, total",
    [
        ("qwen2_5_1_5b", 1_543_714_304),  # Hugging Face Qwen/Qwen2.5-1.5B
        ("qwen2_5_7b", 7_615_616_512),  # Qwen/Qwen2.5-7B
        ("llama3_8b", 8_030_261_248),  # meta-llama/Llama-3.1-8B
        ("qwen3_8b", 8_190_735_360),  # Qwen/Qwen3-8B ("8.2B", 6.95B without embeddings)
    ],
)
def test_dense_totals_match_hugging_face(name, total):
    counts = count_parameters(load_model(name))
    assert counts["total"] == total
    assert counts["active"] == total
    assert counts["mtp"] == 0


def test_deepseek_v3_is_671b_total_37b_active():
    c = count_parameters(load_model("deepseek_v3"))
    assert abs(c["total"] - 671.0e9) / 671.0e9 < 1e-3
    assert abs(c["active"] - 37.55e9) / 37.55e9 < 1e-3
    assert c["embedding"] == 129280 * 7168
    assert c["output"] == 129280 * 7168
    assert c["moe_experts"] == 58 * 256 * 3 * 7168 * 2048
    # MTP: one MoE layer + 2h*h projection + 3 norms; HF's "14B" also counts its own embedding and head
    assert c["mtp"] == c["moe_layer"] + 2 * 7168 * 7168 + 3 * 7168
    assert abs(c["mtp"] + 2 * c["embedding"] - 13.5e9) / 13.5e9 < 0.01


def test_qwen3_30b_a3b_is_30_5b_total_3_3b_active():
    """Qwen/Qwen3-30B-A3B: 30,532,122,624 parameters in its safetensors; the model card's
    30.5B total, 3.3B activated, 29.9B without embeddings. QK-norm weights included."""
    c = count_parameters(load_model("qwen3_30b_a3b"))
    assert c["total"] == 30_532_122_624
    assert abs(c["active"] - 3.3e9) < 0.06e9
    assert abs(c["total"] - c["embedding"] - c["output"] - 29.9e9) < 0.06e9
    assert c["moe_experts"] == 48 * 128 * 3 * 2048 * 768 and c["mtp"] == 0


def test_tied_embeddings_are_counted_once():
    model = load_model("tiny_dense")
    c = count_parameters(model)
    assert c["output"] == 0
    # embedding (shared with the output layer) + final norm (hidden 96) + the layers
    assert c["total"] == c["embedding"] + 96 + model.num_layers * c["dense_layer"]


BUILD = """
import sys
from r1mega.models.config import ModelConfig
from r1mega.models.params import count_parameters
from r1mega.models.precision import PrecisionConfig
from r1mega.models.provider import build_model
from r1mega.parallel.config import ParallelConfig
from r1mega.parallel.dims import ParallelDims
from r1mega.plan.sources import load_model
dims = ParallelDims.resolve(ParallelConfig(), 1)
dims.build("gloo")
for name in sys.argv[1:]:
    m = load_model(name)
    gpt = build_model(m, dims, PrecisionConfig(dtype="fp32"))
    print(name, sum(p.numel() for p in gpt.parameters()), count_parameters(m)["total"])
"""


def test_counts_equal_the_built_megatron_model():
    out = subprocess.run(
        [sys.executable, "-c", BUILD, "deepseek_v3_tiny", "tiny_dense", "qwen3_tiny", "qwen3_moe_tiny"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "MASTER_PORT": "29613"},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [line.split() for line in out.stdout.strip().splitlines()]
    assert {r[0] for r in rows} == {"deepseek_v3_tiny", "tiny_dense", "qwen3_tiny", "qwen3_moe_tiny"}
    for name, built, counted in rows:
        assert int(built) == int(counted), name
