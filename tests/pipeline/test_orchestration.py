"""The pipeline orchestrator without models: selection, overrides, DONE.json, mixing, report."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from r1mega.config.compose import hydra_session
from r1mega.config.schema import R1Config
from r1mega.pipeline import preflight, runner, steps
from r1mega.pipeline.config import PipelineConfig, StepConfig
from r1mega.pipeline.mixing import mix_sft
from r1mega.pipeline.report import collect, table
from r1mega.pipeline.select import run_dir, runs_pipeline


def test_a_stage_on_the_command_line_wins_over_the_default_pipeline():
    assert runs_pipeline("tiny_r1", []) is True
    assert runs_pipeline("tiny_r1", ["stage=sft", "trainer.max_steps=3"]) is False
    assert runs_pipeline("tiny_r1", ["stage.name=eval"]) is False
    assert runs_pipeline(None, []) is False
    with pytest.raises(ValueError, match="either pipeline=... or stage=..."):
        runs_pipeline("r1", ["pipeline=r1", "stage=sft"])
    assert run_dir("sft", "tiny_r1", "20250101-000000", []) == "runs/pipeline/tiny_r1"
    assert run_dir("sft", "tiny_r1", "20250101-000000", ["stage=sft"]) == "runs/sft/20250101-000000"
    assert run_dir("eval", None, "T", []) == "runs/eval/T"


def test_overrides_merge_last_wins_and_references_resolve(tmp_path):
    pcfg = PipelineConfig(name="p", common=["model=deepseek_v3_tiny", "trainer.max_steps=5"],
                          steps=[StepConfig("a", overrides=["stage=sft"]),
                                 StepConfig("b", overrides=["stage=eval", "model=tiny_dense",
                                                            "trainer.init_from=@{a}/checkpoints", "x=@{pipeline}"])])
    cli = steps.forwarded(["pipeline=p", "pipeline.vars.k=3", "trainer.max_steps=7", "+rollout.top_k=5"])
    assert cli == ["trainer.max_steps=7", "+rollout.top_k=5"]
    args = steps.stage_overrides(pcfg, pcfg.steps[1], tmp_path, cli)
    assert args == ["trainer.max_steps=7", "+rollout.top_k=5", "stage=eval", "model=tiny_dense",
                    f"trainer.init_from={tmp_path}/a/checkpoints", f"x={tmp_path}", "pipeline=none"]
    assert steps.shadowed(pcfg, cli) == {}
    assert steps.shadowed(pcfg, ["model=llama3_8b", "trainer.max_steps=2"]) == {"b": ["model"]}
    with pytest.raises(ValueError, match=r"unknown reference @\{nope\}"):
        steps.substitute("trainer.init_from=@{nope}/checkpoints", tmp_path, {"a"})
    cmd = steps.command(["stage=sft"], tmp_path / "a", 2)
    assert cmd[1:4] == ["-m", "torch.distributed.run", "--nproc-per-node"] and cmd[-1] == f"hydra.run.dir={tmp_path}/a"


@pytest.mark.parametrize("change,needle", [
    (dict(steps=[]), "pipeline.steps is empty"),
    (dict(steps=[StepConfig("a", overrides=["stage=sft"]), StepConfig("a", overrides=["stage=sft"])]), "used twice"),
    (dict(steps=[StepConfig("a/b", overrides=["stage=sft"])]), "plain directory name"),
    (dict(steps=[StepConfig("a", overrides=["trainer.max_steps=1"])]), "must choose a stage"),
    (dict(steps=[StepConfig("a", kind="mix")]), "inputs is empty"),
    (dict(steps=[StepConfig("a", kind="train", overrides=["stage=sft"])]), "kind='train'"),
    (dict(extra_sft_ratio=0.2), "extra_sft_files is empty"),
    (dict(stop_after="zzz"), "stop_after='zzz'"),
    (dict(report={"base": "a-eval"}), "pipeline.report.base"),
])
def test_pipeline_config_errors_name_the_key(change, needle):
    cfg = PipelineConfig(name="p", steps=[StepConfig("a", overrides=["stage=sft"])])
    for k, v in change.items():
        setattr(cfg, k, v)
    with pytest.raises(ValueError, match=needle.replace("[", r"\[")):
        cfg.validate()


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_mix_reaches_the_ratio_deterministically(tmp_path):
    reasoning = _jsonl(tmp_path / "r.jsonl", [{"prompt": f"q{i}", "response": f"a{i}"} for i in range(9)])
    extra = _jsonl(tmp_path / "e.jsonl", [{"messages": [{"role": "user", "content": f"w{i}"},
                                                        {"role": "assistant", "content": "ok"}]} for i in range(2)])
    m = mix_sft([reasoning], [extra], 0.25, tmp_path / "out", seed=0)
    assert (m["reasoning"], m["extra"], m["records"]) == (9, 3, 12)  # 3 / 12 = 25%, cycling 2 records
    rows = [json.loads(l) for l in (tmp_path / "out" / "data.jsonl").read_text().splitlines()]
    assert [r.get("prompt") for r in rows[:9]] == [f"q{i}" for i in range(9)]
    assert all("messages" in r for r in rows[9:])
    first = (tmp_path / "out" / "data.jsonl").read_text()
    mix_sft([reasoning], [extra], 0.25, tmp_path / "out", seed=0)
    assert (tmp_path / "out" / "data.jsonl").read_text() == first
    assert mix_sft([reasoning], [], 0.0, tmp_path / "o2")["records"] == 9
    small = mix_sft([reasoning], [], 0.0, tmp_path / "o4", min_records=20)
    assert (small["unique_records"], small["records"], small["repeated_to_min_records"]) == (9, 20, True)
    rows = [json.loads(l)["prompt"] for l in (tmp_path / "o4" / "data.jsonl").read_text().splitlines()]
    assert rows == [f"q{i % 9}" for i in range(20)]
    _jsonl(tmp_path / "bad.jsonl", [{"text": "x"}])
    with pytest.raises(ValueError, match=r"bad.jsonl:1: an SFT record needs prompt and response"):
        mix_sft([reasoning], [tmp_path / "bad.jsonl"], 0.5, tmp_path / "o3")


def test_report_table_and_missing_entries(tmp_path):
    (tmp_path / "rl").mkdir()
    ev = {"pass@1": 0.25, "cons@8": 0.5, "greedy": 0.375, "k": 8, "mean_response_length": 41.0}
    (tmp_path / "rl" / "summary.json").write_text(json.dumps({"eval_after": ev}))
    evals = collect(tmp_path, {"rl": "rl:eval_after", "base": "rl:eval_before", "x": "missing:eval"})
    assert evals["rl"]["cons@k"] == 0.5 and evals["base"] is None and evals["x"] is None
    assert table(evals).splitlines() == [
        "| model | pass@1 | cons@8 | greedy | mean length |", "|---|---:|---:|---:|---:|",
        "| rl | 0.250 | 0.500 | 0.375 | 41.0 |", "| base | - | - | - | - |", "| x | - | - | - | - |"]


FAKE_STAGE = """
import json, os, sys, time
from pathlib import Path
args = dict(a.split('=', 1) for a in sys.argv[1:])
run = Path(args['hydra.run.dir']); run.mkdir(parents=True, exist_ok=True)
with open(run / 'starts.txt', 'a') as fh: fh.write('x')
if args.get('fail') == '1': sys.exit(3)
ev = {'pass@1': float(args.get('score', 0)), 'cons@8': 0.0, 'greedy': 0.0, 'k': 8}
(run / 'summary.json').write_text(json.dumps({'eval': ev}))
(run / 'metrics.jsonl').write_text(json.dumps({'step': 1, 'loss': 1.0}) + '\\n')
"""


@pytest.fixture
def fake_stages(tmp_path, monkeypatch):
    script = tmp_path / "fake_stage.py"
    script.write_text(FAKE_STAGE)
    monkeypatch.setattr(steps, "command", lambda args, step_dir, nproc: [sys.executable, str(script), *args,
                                                                           f"hydra.run.dir={step_dir}"])
    monkeypatch.setattr(runner.preflight, "check_all", lambda pcfg, plan: None)  # fake overrides like score=0.5


def _cfg(tmp_path, fail_b="0") -> R1Config:
    cfg = R1Config()
    cfg.run_dir = str(tmp_path / "pipe")
    data = _jsonl(tmp_path / "rs.jsonl", [{"prompt": "q", "response": "a"}])
    cfg.pipeline = PipelineConfig(
        name="fake",
        steps=[StepConfig("a", overrides=["stage=sft", "score=0.5"]),
               StepConfig("mixed", kind="mix", inputs=[str(data)]),
               StepConfig("b", overrides=["stage=eval", "score=0.75", f"fail={fail_b}", "src=@{a}"])],
        report={"first": "a:eval", "second": "b:eval"})
    return cfg


def test_rerun_skips_done_steps_and_resumes_the_failed_one(tmp_path, fake_stages, capsys):
    with pytest.raises(SystemExit) as err:
        runner.run_pipeline(_cfg(tmp_path, fail_b="1"), [])
    assert err.value.code == 3
    pipe = tmp_path / "pipe"
    assert (pipe / "a" / "DONE.json").is_file() and (pipe / "mixed" / "DONE.json").is_file()
    assert not (pipe / "b" / "DONE.json").exists()
    # The fix is a changed override of b only: a and the mix are skipped, b runs in its directory.
    summary = runner.run_pipeline(_cfg(tmp_path, fail_b="0"), [])
    assert (pipe / "a" / "starts.txt").read_text() == "x" and (pipe / "b" / "starts.txt").read_text() == "xx"
    assert {k: v["status"] for k, v in summary["steps"].items()} == {"a": "skipped", "mixed": "skipped", "b": "ran"}
    assert summary["eval"]["first"]["pass@1"] == 0.5 and summary["eval"]["second"]["pass@1"] == 0.75
    assert json.loads((pipe / "summary.json").read_text())["eval"]["second"]["pass@1"] == 0.75
    assert (pipe / "pipeline_curves.png").stat().st_size > 1000 and "| second | 0.750 |" in capsys.readouterr().out
    # A finished step whose settings changed is not silently reused.
    changed = _cfg(tmp_path)
    changed.pipeline.steps[0].overrides = ["stage=sft", "score=0.9"]
    with pytest.raises(ValueError, match=r"step 'a' finished earlier with other settings .*score=0.9"):
        runner.run_pipeline(changed, [])


def test_stop_after_skips_the_rest_and_the_report(tmp_path, fake_stages):
    cfg = _cfg(tmp_path)
    cfg.pipeline.stop_after = "a"
    summary = runner.run_pipeline(cfg, [])
    assert list(summary["steps"]) == ["a"] and summary["complete"] is False and "eval" not in summary


def test_bundled_pipelines_compose_and_validate():
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from r1mega.config.schema import to_config
    from r1mega.config.paths import conf_dir
    from r1mega.config.store import register

    register()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(conf_dir())):
            for name in ("tiny_r1", "r1_zero", "r1", "smoke", "grpo_learns"):
                cfg = to_config(compose("config", overrides=[f"pipeline={name}"]))
                if name == "r1":
                    with pytest.raises(ValueError, match="pipeline.vars.base_checkpoint must be set for pipeline=r1"):
                        cfg.pipeline.validate()
                else:
                    cfg.pipeline.validate()
                assert cfg.pipeline.name == name
            tiny = to_config(compose("config", overrides=["pipeline=tiny_r1", "pipeline.vars.cold_start_steps=7"]))
            cold = next(s for s in tiny.pipeline.steps if s.name == "cold_start")
            assert "trainer.max_steps=7" in cold.overrides
            assert set(tiny.pipeline.report) == {"base", "r1_zero", "cold_start", "reasoning_rl", "sft", "final",
                                                 "student", "student_cold_start_only"}
    finally:
        GlobalHydra.instance().clear()


@pytest.mark.parametrize("name", ["tiny_r1", "smoke", "r1_zero", "r1", "grpo_learns"])
def test_every_step_of_the_bundled_pipelines_composes_and_validates(name, tmp_path):
    """Each stage step's overrides make a valid r1mega-train configuration (catches e.g. lr < min_lr)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from r1mega.config.schema import to_config
    from r1mega.config.paths import conf_dir
    from r1mega.config.store import register

    given = [f"pipeline.vars.{k}={v}" for k, v in {
        "base_checkpoint": "/ck/base", "tokenizer": "/hf/tok", "cold_start_files": "[/d/cold.jsonl]",
        "reasoning_train_files": "[/d/train.jsonl]", "reasoning_test_files": "[/d/test.jsonl]",
        "reward_model": tmp_path / "rm"}.items()] if name == "r1" else []
    (tmp_path / "rm").mkdir()  # all_scenario.reward_model.path must be a directory
    register()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(conf_dir())):
            pcfg = to_config(compose("config", overrides=[f"pipeline={name}", *given])).pipeline
            pcfg.validate()
            for step in pcfg.steps:
                if step.kind != "stage":
                    continue
                cfg = to_config(compose("config", overrides=steps.stage_overrides(pcfg, step, tmp_path, [])))
                cfg.validate(step.nproc or pcfg.nproc)  # the stage's own settings included
                assert cfg.pipeline.name is None, step.name
    finally:
        GlobalHydra.instance().clear()


def test_preflight_stops_a_bad_setting_of_a_later_step_before_anything_runs(tmp_path):
    """`r1mega-train parallel.tp=3` (the default pipeline) fails at once with the stage's own message."""
    import os
    import subprocess

    run = tmp_path / "tiny"
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    for override, needle in [("parallel.tp=3", "pipeline step r1_zero: parallel.tp=3 does not divide "
                                               "model.num_attention_heads=4"),
                             ("curation.filters.max_repeat_fraction=2", "pipeline step rejection_sampling: "
                                                                        "curation.filters.max_repeat_fraction=2.0")]:
        # "pipeline.stop_after=r1_zero" bounds the damage should the preflight ever let a bad setting through
        out = subprocess.run([sys.executable, "-m", "r1mega.cli.train", override, "pipeline.stop_after=r1_zero",
                              "pipeline.vars.r1_zero_steps=1", f"hydra.run.dir={run}"],
                             capture_output=True, text=True, env=env, timeout=300)
        assert out.returncode == 2 and needle in out.stderr, out.stderr[-2000:]
        assert "Traceback" not in out.stderr
        assert [p.name for p in run.iterdir() if p.is_dir() and p.name != ".hydra"] == [], "no step may start"


def test_preflight_names_the_new_place_of_a_renamed_key_in_a_step():
    from r1mega.config.errors import ConfigError

    with hydra_session():
        with pytest.raises(ConfigError, match="^pipeline step eval: rollout.eval_k was renamed: use evaluation.k$"):
            preflight.check_step(["stage=eval", "rollout.eval_k=4"], 1, "eval")
        with pytest.raises(ConfigError, match="^pipeline step eval: evaluation.k must be >= 1, got 0$"):
            preflight.check_step(["stage=eval", "evaluation.k=0"], 1, "eval")


# What each conf/preset option of tiny_r1 stands for, as the plain overrides the pipeline used to repeat.
PRESET_OVERRIDES = {
    "preset=tiny_r1_teacher": ["model=deepseek_v3_tiny", "model.num_layers=3", "model.rope_type=rope",
                               "model.rotary_base=100"],
    "preset=tiny_r1_rl": ["optim.warmup_steps=0", "optim.decay_style=constant", "optim.min_lr=0.0"],
    "preset=tiny_r1_student": ["model=tiny_dense", "model.num_layers=4", "model.num_attention_heads=2",
                               "model.num_query_groups=2"],
}


def test_tiny_r1_presets_compose_exactly_as_the_overrides_they_replace(tmp_path):
    """Every step of tiny_r1 composes to the same configuration with its presets as with their overrides."""
    from hydra import compose
    from omegaconf import OmegaConf

    from r1mega.config.schema import to_config

    def expand(overrides):
        return [x for o in overrides for x in PRESET_OVERRIDES.get(o, [o])]

    with hydra_session():
        pcfg = to_config(compose("config", overrides=["pipeline=tiny_r1"])).pipeline
        assert any(o in PRESET_OVERRIDES for o in pcfg.common)
        # the old lists: the teacher's model settings in common; a student step replaced them
        old = PipelineConfig(**{**vars(pcfg), "common": expand(pcfg.common)})
        checked = 0
        for step in pcfg.steps:
            if step.kind != "stage":
                continue
            new_args = steps.stage_overrides(pcfg, step, tmp_path, [])
            old_step = StepConfig(**{**vars(step), "overrides": expand(step.overrides)})
            old_args = steps.stage_overrides(old, old_step, tmp_path, [])
            new_cfg = OmegaConf.to_container(compose("config", overrides=new_args), resolve=True)
            old_cfg = OmegaConf.to_container(compose("config", overrides=old_args), resolve=True)
            assert new_cfg == old_cfg, step.name
            checked += 1
        assert checked == 11
