"""The vLLM engine's pieces that need no vLLM: config.json, output conversion, placement,
batch sharing across ranks, engine arguments, and the clear errors on a machine without vLLM.

The engine itself (real vLLM on a GPU) is tested in tests/gpu/test_vllm_engine.py and
tools/device/vllm_check.py.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from r1mega.config.errors import ConfigError
from r1mega.rollout.config import RolloutConfig, VllmConfig
from r1mega.rollout.vllm_placement import Placement, _colocated, _separate, distribute
from tests.rollout.dist_workers import distribute_rank, fake_run

CONF = Path(__file__).resolve().parents[2] / "conf"


def model_cfg(name: str):
    import yaml

    from r1mega.models.config import ModelConfig

    return ModelConfig(**yaml.safe_load((CONF / "model" / f"{name}.yaml").read_text()))


@pytest.fixture(scope="module")
def tokenizer():
    from r1mega.data.tokenizer import load_tokenizer

    return load_tokenizer()


def test_deepseek_config_json_has_what_vllm_needs_and_transformers_reads_it(tmp_path, tokenizer):
    from transformers import AutoConfig

    from r1mega.rollout.vllm_model_dir import write_model_dir

    cfg = model_cfg("deepseek_v3_tiny")
    path = write_model_dir(tmp_path / "m", cfg, tokenizer, fp8=True)
    raw = json.loads((path / "config.json").read_text())
    assert raw["topk_method"] == "noaux_tc" and raw["scoring_func"] == "sigmoid"  # else no e_score_correction_bias
    assert raw["architectures"] == ["DeepseekV3ForCausalLM"] and raw["dtype"] == "bfloat16"
    assert raw["eos_token_id"] == tokenizer.eos_token_id and raw["bos_token_id"] == tokenizer.bos_token_id
    assert raw["quantization_config"]["weight_block_size"] == [128, 128]
    hf = AutoConfig.from_pretrained(str(path))
    assert (hf.n_routed_experts, hf.kv_lora_rank, hf.num_hidden_layers) == (8, 32, 4)
    assert (path / "tokenizer.json").is_file()
    assert not (path / "config.json.tmp").exists()


def test_dense_config_json_without_fp8(tmp_path, tokenizer):
    from r1mega.rollout.vllm_model_dir import write_model_dir

    raw = json.loads((write_model_dir(tmp_path, model_cfg("qwen2_5_1_5b"), tokenizer) / "config.json").read_text())
    assert raw["architectures"] == ["Qwen2ForCausalLM"] and raw["tie_word_embeddings"] is True
    assert "quantization_config" not in raw and raw["vocab_size"] == 151936


@dataclass
class _Lp:
    logprob: float


@dataclass
class _Completion:
    token_ids: list
    logprobs: list
    finish_reason: str


def test_completion_to_generation(tokenizer):
    from r1mega.rollout.vllm_engine import to_generation

    eos = tokenizer.eos_token_id
    c = _Completion([5, 6, eos], [{5: _Lp(-0.1), 9: _Lp(-3.0)}, {6: _Lp(-0.2)}, {eos: _Lp(-0.3)}], "stop")
    g = to_generation([1, 2], c, tokenizer)
    assert g.token_ids == [5, 6, eos] and g.logprobs == [-0.1, -0.2, -0.3] and g.finish_reason == "stop"
    assert g.text == tokenizer.decode([5, 6], skip_special_tokens=False)  # EOS not in the text
    g = to_generation([1], _Completion([5, 6], [{5: _Lp(-1.0)}, {6: _Lp(-2.0)}], "length"), tokenizer)
    assert g.truncated and g.text == tokenizer.decode([5, 6], skip_special_tokens=False)
    with pytest.raises(RuntimeError, match="1 log-prob entries for 2 tokens"):
        to_generation([1], _Completion([5, 6], [{5: _Lp(-1.0)}], "length"), tokenizer)


def test_request_seeds_depend_on_request_not_on_batch_split():
    from r1mega.rollout.vllm_engine import request_seed

    seeds = {request_seed(3, c, (d, i)) for c in range(3) for d in range(4) for i in range(50)}
    assert len(seeds) == 3 * 4 * 50 and request_seed(3, 1, (2, 5)) == request_seed(3, 1, (2, 5))


def test_colocated_groups_and_errors():
    everyone = [("h0", str(i)) for i in range(4)] + [("h1", str(i)) for i in range(4)]
    p = _colocated(5, 8, 4, everyone)
    assert p.leaders == [0, 4] and p.group_ranks == [4, 5, 6, 7] and p.devices == ["0", "1", "2", "3"]
    with pytest.raises(ValueError, match="rollout.vllm.tp=3 must divide the number of trainer ranks \\(8\\)"):
        _colocated(0, 8, 3, everyone)
    with pytest.raises(ValueError, match="span hosts"):
        _colocated(0, 8, 8, everyone)


def test_separate_gpus_and_errors():
    everyone = [("h0", "0"), ("h0", "1")]
    assert _separate(0, 2, 2, everyone, [], 4).devices == ["2", "3"]
    assert _separate(1, 2, 2, everyone, [], 4).devices == [] and _separate(1, 2, 2, everyone, [], 4).leaders == [0]
    with pytest.raises(ValueError, match="needs 2 free GPUs"):
        _separate(0, 2, 2, everyone, [], 3)
    with pytest.raises(ValueError, match="overlaps the trainer's GPUs"):
        _separate(0, 2, 1, everyone, [1], 4)


def test_distribute_single_process_passes_seed_keys():
    out = distribute(Placement(), 0, [[1, 2], [3]], fake_run)
    assert [g.token_ids for g in out] == [[3], [4]]  # sum(prompt) + 1000 * dp_rank + index


def test_distribute_over_ranks_gives_each_replica_its_own_results(tmp_path):
    """4 gloo ranks, 2 data-parallel replicas of 2 (TP peers share prompts), 1 or 2 leaders."""
    from tests.foundation.dist_utils import run_ranks

    dp_of = [0, 0, 1, 1]
    for leaders in ([0], [0, 2]):
        res = run_ranks(4, distribute_rank, leaders, dp_of)
        for rank, got in res.items():
            dp = dp_of[rank]
            want = [([dp, j, j], [dp + 2 * j + 1000 * dp + j]) for j in range(3 + dp)]
            assert got == want, (leaders, rank)


def test_llm_kwargs_colocated():
    from r1mega.rollout.vllm_engine import EXTENSION, llm_kwargs

    kw = llm_kwargs(RolloutConfig(engine="vllm", vllm=VllmConfig(tp=2, attention_backend="TRITON_MLA")), Path("/m"),
                    512, 3)
    assert kw["load_format"] == "dummy" and kw["enable_sleep_mode"] is True and kw["tensor_parallel_size"] == 2
    assert kw["worker_extension_cls"] == EXTENSION and kw["logprobs_mode"] == "processed_logprobs"
    assert kw["attention_config"] == {"backend": "TRITON_MLA"} and kw["max_model_len"] == 512
    mod, cls = EXTENSION.rsplit(".", 1)
    assert hasattr(importlib.import_module(mod), cls)
    assert not llm_kwargs(RolloutConfig(vllm=VllmConfig(colocate=False)), Path("/m"), 512, 3)["enable_sleep_mode"]


@pytest.mark.parametrize("field, value, needle", [
    ("tp", 0, "tp=0 must be >= 1"), ("sleep_level", 3, "must be 1 or 2"),
    ("gpu_memory_utilization", 1.0, "must be in \\(0, 1\\)"), ("gpus", [0, 1], "must list rollout.vllm.tp=1"),
])
def test_rollout_config_errors_name_the_field(field, value, needle):
    with pytest.raises(ConfigError, match=f"rollout.vllm.{field}"):
        RolloutConfig(engine="vllm", vllm=VllmConfig(**{field: value})).validate()
    with pytest.raises(ConfigError, match=needle):
        RolloutConfig(engine="vllm", vllm=VllmConfig(**{field: value})).validate()


def test_factory_needs_exactly_one_model_and_vllm_gives_a_clear_error():
    from r1mega.rollout.factory import build_engine

    cfg = type("C", (), {"rollout": RolloutConfig(engine="vllm")})()
    with pytest.raises(TypeError, match="exactly one of tm= or chunks="):
        build_engine(cfg, None, None)
    if importlib.util.find_spec("vllm") is None:
        with pytest.raises(ValueError, match="rollout.engine=vllm needs the vllm package"):
            build_engine(cfg, None, None, chunks=[object()])


class _RecLLM:
    def __init__(self, log):
        self.log = log

    def sleep(self, level):
        self.log.append(f"sleep{level}")

    def wake_up(self, tags):
        self.log.append("wake:" + ",".join(tags))

    def reset_prefix_cache(self):
        self.log.append("reset_prefix")


class _RecBridge:
    def __init__(self, log):
        self.log = log

    def sync(self, llm):
        from r1mega.bridge.execute import SyncStats

        self.log.append("sync")
        return SyncStats()


def _engine(level: int, colocate: bool = True):
    from r1mega.rollout.vllm_engine import VLLMEngine

    log: list = []
    e = VLLMEngine.__new__(VLLMEngine)  # the state machine only; no vLLM behind it
    e.rollout, e.colocate = RolloutConfig(engine="vllm", vllm=VllmConfig(sleep_level=level, colocate=colocate)), colocate
    e.llm, e.bridge, e.sleeping, e.weights_valid, e.last_sync = _RecLLM(log), _RecBridge(log), set(), False, None
    return e, log


def test_colocated_memory_cycle_of_a_grpo_step_level2():
    e, log = _engine(2)
    e.update_weights()  # after start: awake, dummy weights
    e.wake_up(); e.sleep()  # generate (eval)
    e.wake_up(); e.sleep()  # a second generate: weights were dropped, so they are re-synced first
    e.update_weights()  # after training
    e.wake_up(); e.sleep()  # next rollout
    assert log == ["sync", "reset_prefix", "sleep2",
                   "wake:weights", "sync", "wake:kv_cache", "sleep2",
                   "wake:weights", "sync",
                   "wake:kv_cache", "sleep2"]


def test_level1_keeps_weights_and_separate_mode_never_sleeps():
    e, log = _engine(1)
    e.update_weights(); e.wake_up(); e.sleep(); e.wake_up(); e.sleep()
    assert log == ["sync", "reset_prefix", "sleep1", "wake:weights", "wake:kv_cache", "sleep1"]
    e, log = _engine(2, colocate=False)
    e.update_weights(); e.wake_up(); e.sleep(); e.wake_up(); e.update_weights()
    assert log == ["sync", "reset_prefix", "sync", "reset_prefix"]
