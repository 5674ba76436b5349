"""rollout.engine=vllm on a GPU with the real vLLM 0.26.0: log-prob agreement with the
Megatron forward after a sync, and a sync that must change vLLM's outputs.

Skipped without CUDA or vllm. The same checks, with timings, bandwidth and throughput, run in
tools/device/vllm_check.py (what the H200 results in docs/vllm.md come from); this test runs
its ``logprobs`` command on the small DeepSeek-V3 shape and asserts its verdicts.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="needs vllm"),
    pytest.mark.skipif(importlib.util.find_spec("transformer_engine") is None, reason="needs transformer-engine"),
]
ROOT = Path(__file__).resolve().parents[2]
MLA512 = ["model.kv_lora_rank=512", "model.qk_pos_emb_head_dim=64", "model.qk_head_dim=128", "model.v_head_dim=128"]


@pytest.mark.parametrize("model, override", [("deepseek_v3_tiny", MLA512), ("tiny_dense", [])],
                         ids=["deepseek_v3_tiny_mla512", "tiny_dense"])
def test_vllm_logprobs_match_megatron_and_sync_takes_effect(tmp_path, model, override):
    cmd = [sys.executable, str(ROOT / "tools/device/vllm_check.py"), "logprobs", "--model", model, "--tag", "t",
           "--out", str(tmp_path), "--num-prompts", "32"]
    if override:
        cmd += ["--override", *override]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert (tmp_path / "vllm_check_t.json").is_file(), out.stdout[-3000:] + out.stderr[-3000:]
    res = json.loads((tmp_path / "vllm_check_t.json").read_text())
    assert all(res["checks"].values()), res["checks"]
    # the stale comparison shows the perturbation is visible to the comparison at all
    assert res["stale"]["mean_abs_delta"] > 10 * res["resynced"]["mean_abs_delta"]
