"""Stages rejection_sampling, distill_generate and all_scenario_rl as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TINY = ["model=deepseek_v3_tiny", "trainer.progress=false", "trainer.plots=false", "data.seq_length=128",
        "rollout.max_tokens=24", "data.synthetic.num_train=64", "data.synthetic.num_test=4"]
NO_FILTERS = ["curation.filters.format_mode=none", "curation.filters.drop_truncated=false",
              "curation.filters.min_language_fraction=0", "curation.filters.max_repeat_fraction=1"]


def train(args, run_dir: Path, check: bool = True):
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-m", "r1mega.cli.train", *args, f"hydra.run.dir={run_dir}"],
                         capture_output=True, text=True, env=env, timeout=900, cwd=REPO)
    if check:
        assert out.returncode == 0, out.stderr[-4000:]
    return out


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def policy(tmp_path_factory) -> Path:
    """A 2-step SFT checkpoint: an untrained policy, enough to exercise the mechanics."""
    run = tmp_path_factory.mktemp("policy")
    train(["stage=sft", *TINY, "trainer.max_steps=2", "trainer.global_batch_size=8", "trainer.micro_batch_size=8"], run)
    return run / "checkpoints"


DISTILL = ["stage=distill_generate", *TINY, "curation.max_prompts=6", "curation.chunk_prompts=2",
           "curation.samples_per_prompt=1", "curation.require_correct=false", "trainer.global_batch_size=8",
           "trainer.micro_batch_size=4", *NO_FILTERS]


@pytest.fixture(scope="module")
def distilled(tmp_path_factory, policy) -> tuple[list, Path]:
    """One single-rank distill_generate run (6 prompts in 3 chunks): the reference both for a
    resumed run and for the same run on 2 ranks. Its files are only read."""
    args = [*DISTILL, f"trainer.init_from={policy}"]
    run = tmp_path_factory.mktemp("distill") / "straight"
    train(args, run)
    return args, run


def test_rejection_sampling_keeps_verified_samples_with_provenance(tmp_path, policy):
    data = tmp_path / "prompts.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in [
        {"id": "m1", "prompt": "Compute 12 + 30.", "answer": "42", "data_source": "synthetic"},
        {"id": "t1", "prompt": "Name the capital of France.", "answer": "Paris", "data_source": "trivia"},
        {"id": "m2", "prompt": "Compute 5 + 5.", "answer": "10", "data_source": "synthetic"},
    ]))
    run = tmp_path / "rs"
    train(["stage=rejection_sampling", *TINY, f"trainer.init_from={policy}", "data.source=files",
           f"data.train_files=[{data}]", "curation.samples_per_prompt=4", "curation.keep_per_prompt=3",
           "curation.chunk_prompts=2", "curation.judge=tests.pipeline.judges:always_true", *NO_FILTERS], run)
    manifest = json.loads((run / "manifest.json").read_text())
    records = jsonl(run / "data.jsonl")
    assert manifest["prompts"] == 3 and manifest["samples"] == 12
    assert manifest["kept"] == len(records) == manifest["records"]
    assert manifest["kept"] + manifest["rejected_total"] == 12
    # An untrained policy never gets the sums right; the judge accepts every trivia answer (<= 3 kept).
    assert {r["data_source"] for r in records} <= {"trivia"}
    trivia_dupes = manifest["rejected"].get("duplicate", 0) + manifest["rejected"].get("over_cap", 0)
    assert manifest["kept_by_source"]["trivia"] + trivia_dupes == 4
    assert manifest["rejected"]["incorrect"] == 8
    for r in records:
        assert r["prompt"] == "Name the capital of France." and r["answer"] == "Paris" and r["response"]
        p = r["provenance"]
        assert p["verified_by"] == "judge" and p["correct"] is True and p["prompt_id"] == "t1"
        assert p["checkpoint"] == str(policy / "iter_0000002") and p["iteration"] == 2
        assert p["sampling"] == {"temperature": 0.7, "top_p": 0.95, "top_k": -1, "max_tokens": 24, "seed": 1234 + 0}
        assert p["sample_index"] in range(4) and p["finish_reason"] in ("stop", "length")
    assert len({r["response"] for r in records}) == len(records)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["dataset"]["kept"] == manifest["kept"]


def test_distill_generate_resumes_chunk_by_chunk_and_reproduces(tmp_path, distilled):
    args, straight = distilled
    full = jsonl(straight / "data.jsonl")
    assert len(full) == 6 and json.loads((straight / "manifest.json").read_text())["chunks_resumed"] == 0
    # Simulate a kill while chunk 2 was being written: progress lists chunks 0 and 1 only, and the
    # shard has a torn line after them.
    killed = tmp_path / "killed"
    (killed / "shards").mkdir(parents=True)
    (killed / "shards" / "plan.json").write_text((straight / "shards" / "plan.json").read_text())
    prog = json.loads((straight / "shards" / "rank_00000.progress.json").read_text())
    prog["chunks"] = {k: v for k, v in prog["chunks"].items() if k in ("0", "1")}
    end = prog["chunks"]["1"]["end"]
    shard = (straight / "shards" / "rank_00000.jsonl").read_bytes()
    (killed / "shards" / "rank_00000.jsonl").write_bytes(shard[:end] + b'{"id": "torn')
    (killed / "shards" / "rank_00000.progress.json").write_text(json.dumps(prog))
    out = train(args, killed)
    assert "chunk 1/3" not in out.stdout and "chunk 3/3" in out.stdout
    assert json.loads((killed / "manifest.json").read_text())["chunks_resumed"] == 2
    resumed = jsonl(killed / "data.jsonl")
    assert [r["response"] for r in resumed] == [r["response"] for r in full]  # a chunk's seed is its own
    # Rerunning into the same directory with another chunking is refused, naming the difference.
    bad = train([*args, "curation.chunk_prompts=3"], killed, check=False)
    assert bad.returncode == 2 and "chunk_prompts: 2 -> 3" in bad.stderr


def test_vllm_engine_is_accepted_and_explains_what_is_missing(tmp_path):
    pytest.importorskip("omegaconf")
    try:
        import vllm  # noqa: F401
        pytest.skip("vllm is installed here")
    except ImportError:
        pass
    out = train(["stage=distill_generate", *TINY, "trainer.init_from=/nonexistent", "rollout.engine=vllm"],
                tmp_path / "v", check=False)
    assert out.returncode == 2
    assert "rollout.engine=vllm needs the vllm package" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.slow
def test_all_scenario_rl_routes_general_prompts_to_the_reward_model(tmp_path, policy):
    from tests.pipeline.test_reward_router import _save_classifier

    rm = _save_classifier(tmp_path / "rm")
    general = tmp_path / "general.jsonl"
    general.write_text("".join(json.dumps({"prompt": f"Say something kind about {n}."}) + "\n" for n in range(5)))
    run = tmp_path / "asrl"
    train(["stage=all_scenario_rl", *TINY, f"trainer.init_from={policy}", "trainer.max_steps=2",
           "trainer.global_batch_size=16", "trainer.micro_batch_size=16", "rl.group_size=4", "evaluation.k=1",
           f"all_scenario.reward_model.path={rm}", f"all_scenario.general_files=[{general}]",
           "all_scenario.general_fraction=0.5"], run)
    rows = jsonl(run / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2]
    assert all(r["reward_errors"] == 0 for r in rows)
    # Rule rewards of an untrained policy are all 0 (no format, no answer); preference rewards are
    # non-zero floats, so a step that drew general prompts has reward spread.
    assert any(r["reward_std"] > 0 for r in rows)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["stage"] == "all_scenario_rl" and summary["eval_after"]["n_questions"] == 4
    assert not (run / "reward_model").exists()  # the configured model was used, no random one built


def test_distill_generate_sharded_over_two_ranks_equals_one_rank(tmp_path, distilled):
    """Chunks dealt over dp=2 ranks (gloo) merge into exactly the single-rank dataset."""
    from tests.conftest import free_port

    args, one = distilled
    two = tmp_path / "two"
    env = {k: v for k, v in os.environ.items() if k not in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE")}
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
                          str(free_port()), "-m", "r1mega.cli.train", *args, f"hydra.run.dir={two}"],
                         capture_output=True, text=True, env=dict(env, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1"),
                         timeout=900, cwd=REPO)
    assert out.returncode == 0, out.stderr[-4000:]
    progress = {p.name: sorted(json.loads(p.read_text())["chunks"]) for p in (two / "shards").glob("*.progress.json")}
    assert progress == {"rank_00000.progress.json": ["0", "2"], "rank_00001.progress.json": ["1"]}
    assert [r["response"] for r in jsonl(two / "data.jsonl")] == [r["response"] for r in jsonl(one / "data.jsonl")]
    assert [r["id"] for r in jsonl(two / "data.jsonl")] == [f"synthetic-train-{i}-s0" for i in range(6)]
