"""The weight bridge on CPU: packing, the recorded plan, and full syncs of real Megatron models.

The transport is replaced by an in-process hand-over (CUDA IPC and NCCL need GPUs; they are
exercised in tests/gpu/test_vllm_engine.py and tools/device/vllm_check.py), everything else
is the real code: ``iter_hf_buckets`` over a real Megatron-Core model imported from a tiny
random HF checkpoint, the plan, the packing, and the worker extension's unpacking.
"""

from __future__ import annotations

import pytest
import torch

from r1mega.bridge.execute import WeightBridge
from r1mega.bridge.plan import ALIGN, SyncPlan, bucket_spec, pack_bucket, unpack_bucket
from tests.bridge.fakes import FakeLLM, LocalTransport


def test_pack_unpack_round_trip_is_bit_exact_for_mixed_dtypes():
    g = torch.Generator().manual_seed(0)
    bucket = [("a", torch.randn(3, 5, generator=g).to(torch.bfloat16)),
              ("b", torch.randn(7, generator=g)),
              ("c", torch.randn(4, 4, generator=g).to(torch.float8_e4m3fn)),
              ("d", torch.tensor(3.5, dtype=torch.float32)),
              ("e", torch.randn(2, 3, generator=g, dtype=torch.float64)[:, 1])]  # non-contiguous
    spec = bucket_spec(bucket)
    assert all(t.offset % ALIGN == 0 for t in spec.tensors)
    assert spec.nbytes % ALIGN == 0 and spec.nbytes >= sum(t.nbytes for t in spec.tensors)
    out = unpack_bucket(pack_bucket(bucket, spec), spec)
    for (n1, a), (n2, b) in zip(bucket, out):
        assert n1 == n2 and a.dtype == b.dtype and a.shape == b.shape
        assert torch.equal(a.contiguous().view(-1).view(torch.uint8), b.contiguous().view(-1).view(torch.uint8))


def test_plan_check_names_the_first_difference_and_survives_rpc_encoding():
    plan = SyncPlan()
    plan.append([("w", torch.zeros(2, 3)), ("v", torch.zeros(4, dtype=torch.bfloat16))])
    assert SyncPlan.from_dict(plan.to_dict()).buckets == plan.buckets
    plan.check(0, [("w", torch.ones(2, 3)), ("v", torch.ones(4, dtype=torch.bfloat16))])  # values may change
    with pytest.raises(ValueError, match=r"bucket 0 .*tensor 1: recorded v \(4,\) bfloat16, now v \(5,\)"):
        plan.check(0, [("w", torch.zeros(2, 3)), ("v", torch.zeros(5, dtype=torch.bfloat16))])
    with pytest.raises(ValueError, match="beyond the recorded plan of 1 buckets"):
        plan.check(1, [("w", torch.zeros(2, 3))])


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """family -> (Megatron chunk, ModelConfig, HF tensors, transformers state_dict names)."""
    from r1mega.convert import import_hf, latest_iteration_dir, load_model_config
    from r1mega.convert.megatron_io import build_chunk, load_model, setup
    from r1mega.parallel.config import ParallelConfig
    from r1mega.parallel.dims import ParallelDims
    from tests.convert.tiny_models import add_mtp_layers, hf_config, make_hf, read_all

    # The groups go up now, for the whole module (tests/conftest.py destroys them after it):
    # the chunks built below are shared by several tests.
    ParallelDims.resolve(ParallelConfig(), 1).build()
    cache = {}

    def get(family):
        """``family`` or ``deepseek_v3_mtp`` (one multi-token-prediction layer added)."""
        if family not in cache:
            root = tmp_path_factory.mktemp(family)
            hf = make_hf(family.removesuffix("_mtp"), root / "hf")
            if family.endswith("_mtp"):
                add_mtp_layers(hf)
            import_hf(hf, root / "meg")
            cfg = load_model_config(root / "meg")
            dims = setup(cfg)
            chunk = build_chunk(cfg, dims, "fp32")
            load_model(chunk, latest_iteration_dir(root / "meg"))
            from transformers import AutoModelForCausalLM

            with torch.device("meta"):
                names = set(AutoModelForCausalLM.from_config(hf_config(family.removesuffix("_mtp"))).state_dict())
            cache[family] = (chunk, cfg, read_all(hf), names)
        return cache[family]

    return get


@pytest.mark.parametrize("family", ["qwen2", "deepseek_v3", "qwen3", "qwen3_moe"])
def test_sync_delivers_every_hf_tensor_exactly_and_reuses_the_plan(live, family):
    chunk, cfg, originals, _ = live(family)
    bucket_bytes = 48 * 1024
    llm = FakeLLM()
    bridge = WeightBridge([chunk], cfg, LocalTransport(), bucket_bytes)
    stats = bridge.sync(llm)
    got = llm.worker.model_runner.model.weights
    assert sorted(got) == sorted(originals)
    assert all(torch.equal(got[n], originals[n]) for n in originals)
    calls = llm.worker.calls
    assert calls[:2] == ["r1_set_plan", "r1_begin_sync"] and calls[-1] == "r1_finish_sync"
    assert calls.count("r1_extend_plan") == calls.count("r1_load_local") == stats.buckets == len(bridge.plan.buckets)
    assert stats.buckets > 3  # the test exercises bucketing
    for b in bridge.plan.buckets:  # bounded: a bucket over the bound holds one (big) tensor
        assert sum(t.nbytes for t in b.tensors) <= bucket_bytes or len(b.tensors) == 1
    assert stats.bytes == sum(t.numel() * t.element_size() for t in originals.values())

    # second sync: plan reused (no specs shipped), new values arrive
    tensors = [t for t in chunk.state_dict(keep_vars=True).values()  # parameters and buffers (router bias)
               if isinstance(t, torch.Tensor) and t.is_floating_point()]
    with torch.no_grad():
        for t in tensors:
            t.add_(1.0)
    llm.worker.calls.clear()
    bridge.sync(llm)
    assert "r1_extend_plan" not in llm.worker.calls and "r1_set_plan" not in llm.worker.calls
    moved = llm.worker.model_runner.model.weights
    assert all(torch.equal(moved[n], originals[n] + 1.0) for n in originals if originals[n].is_floating_point())
    with torch.no_grad():
        for t in tensors:
            t.sub_(1.0)


def checkpoint_names(names: set, num_experts: int) -> set:
    """transformers 5 fuses routed experts into 3-D ``experts.gate_up_proj`` / ``experts.down_proj``
    parameters; checkpoints (and vLLM's DeepSeek loader) name each expert's matrices."""
    out = set()
    for n in names:
        if n.endswith(".experts.gate_up_proj"):
            out |= {f"{n[:-len('gate_up_proj')]}{e}.{p}.weight" for e in range(num_experts) for p in ("gate_proj", "up_proj")}
        elif n.endswith(".experts.down_proj"):
            out |= {f"{n[:-len('down_proj')]}{e}.down_proj.weight" for e in range(num_experts)}
        else:
            out.add(n)
    return out


@pytest.mark.parametrize("family", ["qwen2", "deepseek_v3", "qwen3", "qwen3_moe"])
def test_plan_covers_every_parameter_of_the_transformers_model(live, family):
    """Name coverage: the names vLLM's load_weights gets are exactly the HF model's parameters
    (a tied lm_head is the embedding, which vLLM's tied models skip as well)."""
    chunk, cfg, _, hf_names = live(family)
    bridge = WeightBridge([chunk], cfg, LocalTransport(), 1 << 20)
    bridge.sync(FakeLLM())
    expected = checkpoint_names(hf_names, cfg.num_experts) - ({"lm_head.weight"} if cfg.tie_embeddings else set())
    assert set(bridge.plan.names) == expected
    assert len(bridge.plan.names) == len(set(bridge.plan.names))


def test_fp8_plan_sends_block_scales_for_every_linear_weight(live):
    from r1mega.convert import entries
    from r1mega.convert.load_hf import mapping_options

    chunk, cfg, originals, _ = live("deepseek_v3")
    bridge = WeightBridge([chunk], cfg, LocalTransport(), 1 << 20, fp8=True)
    llm = FakeLLM()
    bridge.sync(llm)
    specs = {t.name: t for b in bridge.plan.buckets for t in b.tensors}
    fp8_names = {h for e in entries(cfg, mapping_options(cfg, [chunk])) if e.fp8 for h in e.hf}
    assert fp8_names and all(specs[n].dtype == "float8_e4m3fn" for n in fp8_names)
    for n in fp8_names:
        rows, cols = specs[n].shape
        assert specs[n + "_scale_inv"].shape == (-(-rows // 128), -(-cols // 128))
        assert specs[n + "_scale_inv"].dtype == "float32"
    assert set(specs) == set(originals) | {n + "_scale_inv" for n in fp8_names}


def test_sync_leaves_out_mtp_layers_unless_asked(live):
    """A model with an MTP layer: the export stream yields its tensors (HF ``model.layers.2.*``,
    as the offline exporter needs), the bridge sends exactly the others by default -- what
    vLLM's main model loads -- and everything with ``include_mtp=True``."""
    from r1mega.convert import iter_hf_tensors

    chunk, cfg, originals, _ = live("deepseek_v3_mtp")
    mtp_prefix = f"model.layers.{cfg.num_layers}."
    mtp_names = {n for n in originals if n.startswith(mtp_prefix)}
    assert cfg.mtp_num_layers == 1 and {f"{mtp_prefix}eh_proj.weight", f"{mtp_prefix}embed_tokens.weight"} <= mtp_names
    streamed = dict(iter_hf_tensors([chunk], cfg, bucket_bytes=1 << 20))
    assert set(streamed) == set(originals)

    for include_mtp, expected in ((False, set(originals) - mtp_names), (True, set(originals))):
        llm = FakeLLM()
        bridge = WeightBridge([chunk], cfg, LocalTransport(), 48 * 1024, include_mtp=include_mtp)
        bridge.sync(llm)
        got = llm.worker.model_runner.model.weights
        assert set(bridge.plan.names) == set(got) == expected, include_mtp
        assert all(torch.equal(got[n], originals[n]) for n in expected)
        bridge.sync(llm)  # the second sync checks the stream against the recorded plan
