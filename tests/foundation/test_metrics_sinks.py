"""``trainer.loggers``: TensorBoard and W&B get the keys and values of ``metrics.jsonl``.

The sinks are the real ones: TensorBoard's event files are read back with its own
``EventAccumulator``, W&B's offline run file (``run-<id>.wandb``, records in LevelDB's log
format, each a ``wandb_internal.Record`` protobuf) with the reader below.
"""

from __future__ import annotations

import importlib.util
import json
import math
import struct

import pytest

from r1mega.training import sinks
from r1mega.training.config import TrainerConfig
from r1mega.training.metrics import MetricsLogger

# Two calls for step 3 (train metrics, then eval) as GRPO's loop does; a NaN (null in
# metrics.jsonl) and a string, which only metrics.jsonl keeps; a bool, kept as 0/1.
STEPS = [
    (1, {"loss": 2.5, "lr": 1e-3, "grad_norm": 0.75, "epoch": 0}),
    (2, {"loss": 2.0, "lr": 9e-4, "grad_norm": float("nan"), "epoch": 0, "note": "warm"}),
    (3, {"loss": 1.25, "lr": 8e-4, "grad_norm": 0.5, "epoch": 1, "clipped": True}),
    (3, {"eval_pass@1": 0.375}),
]


def _run(run_dir, steps, loggers, resume_at=None):
    logger = MetricsLogger(run_dir, "sft", 4, enabled=True, progress=False, loggers=loggers)
    if resume_at is not None:
        logger.resume_at(resume_at)
    for step, metrics in steps:
        logger.log(step, metrics)
    logger.close()


def _jsonl_scalars(run_dir) -> dict[tuple[str, int], float]:
    """(key, step) -> value of every number in metrics.jsonl (step, stage, time excluded)."""
    out = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        for key, value in record.items():
            if key not in ("step", "stage", "time") and isinstance(value, (int, float)):
                out[(key, record["step"])] = float(value)
    return out


def _tensorboard_scalars(log_dir) -> dict[tuple[str, int], float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {(tag, e.step): e.value for tag in acc.Tags()["scalars"] for e in acc.Scalars(tag)}


def _same(expected: dict, got: dict) -> None:
    assert set(got) == set(expected)
    for key, value in expected.items():  # TensorBoard keeps float32
        assert got[key] == pytest.approx(value, rel=1e-6), key


def test_tensorboard_gets_the_jsonl_keys_and_values(tmp_path):
    pytest.importorskip("tensorboard", reason="the test extra installs tensorboard")
    _run(tmp_path, STEPS, ["tensorboard"])
    expected = _jsonl_scalars(tmp_path)
    assert ("grad_norm", 2) not in expected and ("clipped", 3) in expected and ("eval_pass@1", 3) in expected
    _same(expected, _tensorboard_scalars(tmp_path / "tensorboard" / "sft"))


def test_tensorboard_resume_hides_the_redone_steps(tmp_path):
    """As metrics.jsonl drops lines after the checkpoint, the resumed writer purges later events."""
    pytest.importorskip("tensorboard", reason="the test extra installs tensorboard")
    # eval_pass@1 is only in the first run: TensorBoard's own out-of-order purge (per tag) would
    # keep it; the purge step of the resumed writer drops it
    _run(tmp_path, [(s, {"loss": 10.0 * s}) for s in (1, 2, 3)] + [(3, {"eval_pass@1": 0.5})], ["tensorboard"])
    _run(tmp_path, [(s, {"loss": 1.0 * s}) for s in (3, 4)], ["tensorboard"], resume_at=2)
    expected = _jsonl_scalars(tmp_path)
    assert expected == {("loss", 1): 10.0, ("loss", 2): 20.0, ("loss", 3): 3.0, ("loss", 4): 4.0}
    _same(expected, _tensorboard_scalars(tmp_path / "tensorboard" / "sft"))


def _wandb_records(path):
    """Records of a .wandb file: a 7-byte header, then 32 KiB blocks of LevelDB log chunks."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", data[:7]
    pos, block, pending = 7, 32768, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a chunk header is padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST chunk ends a record
            record = pb.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


@pytest.mark.parametrize("group", [None, "pipeline-7"])
def test_wandb_offline_gets_the_jsonl_keys_and_values(tmp_path, monkeypatch, group):
    pytest.importorskip("wandb", reason="the test extra installs wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_PROJECT", "r1mega-test")
    for var in ("WANDB_API_KEY", "WANDB_DIR", "WANDB_RUN_ID", "WANDB_RESUME", "WANDB_RUN_GROUP"):
        monkeypatch.delenv(var, raising=False)
    if group is not None:
        monkeypatch.setenv("WANDB_RUN_GROUP", group)
    (tmp_path / "config.yaml").write_text("trainer:\n  max_steps: 4\n")
    _run(tmp_path, STEPS, ["wandb"])
    import wandb

    wandb.teardown()  # what the end of the process does: the service writes out the run file (else up to 15 s later)
    (run_file,) = tmp_path.glob("wandb/offline-run-*/run-*.wandb")
    got, run = {}, None
    for record in _wandb_records(run_file):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run = record.run
        elif kind == "history":
            row = {item.nested_key[0] if item.nested_key else item.key: json.loads(item.value_json)
                   for item in record.history.item}
            for key, value in row.items():
                if not key.startswith("_"):
                    got[(key, row["_step"])] = float(value)
    assert (run.display_name, run.project, run.run_group) == ("sft", "r1mega-test", group or tmp_path.name)
    config = {item.key: json.loads(item.value_json) for item in run.config.update}
    assert config["trainer"] == {"max_steps": 4}
    expected = _jsonl_scalars(tmp_path)
    assert set(got) == set(expected)
    assert all(math.isclose(got[k], v, rel_tol=1e-12) for k, v in expected.items())


@pytest.mark.parametrize(
    "loggers,needle",
    [
        (["tensorbord"], "trainer.loggers: unknown logger 'tensorbord'; choose from tensorboard, wandb"),
        (["wandb", "wandb"], "trainer.loggers: logger 'wandb' is listed twice"),
    ],
)
def test_bad_logger_names_the_field(loggers, needle):
    with pytest.raises(ValueError, match=needle):
        TrainerConfig(loggers=loggers).validate()


def test_missing_package_names_what_to_install(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(sinks.importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    needle = "trainer.loggers asks for 'wandb', which needs the 'wandb' package: pip install wandb"
    with pytest.raises(ValueError, match=needle):
        TrainerConfig(loggers=["wandb"]).validate()
    with pytest.raises(ValueError, match=needle):  # the logger checks too, before writing anything
        MetricsLogger(tmp_path, "sft", 1, enabled=True, progress=False, loggers=["wandb"])
    assert not any(tmp_path.iterdir())


def test_loggers_compose_from_the_command_line():
    from r1mega.launch.trainconf import compose

    assert compose([]).trainer.loggers == []
    cfg = compose(["trainer.loggers=[tensorboard,wandb]"])
    assert cfg.trainer.loggers == ["tensorboard", "wandb"]
    cfg = compose(["trainer.loggers=[tensorbord]"])
    with pytest.raises(ValueError, match="trainer.loggers: unknown logger 'tensorbord'"):
        cfg.validate(1)


def test_no_sinks_off_the_logging_rank(tmp_path):
    """Ranks other than 0 (enabled=False) make no sink and write nothing."""
    logger = MetricsLogger(tmp_path, "sft", 2, enabled=False, progress=False, loggers=["tensorboard", "wandb"])
    logger.log(1, {"loss": 1.0})
    logger.close()
    assert logger.sinks == [] and not any(tmp_path.iterdir())
