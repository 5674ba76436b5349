"""The checkpoint layout shared by training and conversion (r1mega.training.ckpt_layout)."""

import json

import pytest

from r1mega.training.ckpt_layout import (
    LATEST,
    META,
    commit_iteration,
    iteration_dir,
    latest_checkpoint,
    latest_iteration_dir,
    staging_dir,
)


def _commit(root, it):
    staging_dir(root, it).mkdir(parents=True)
    return commit_iteration(root, it, {"stage": "test"})


def test_newest_complete_iteration_wins_whatever_latest_says(tmp_path):
    _commit(tmp_path, 1)
    _commit(tmp_path, 12)
    assert (tmp_path / LATEST).read_text() == "12\n"
    (tmp_path / LATEST).write_text("1\n")  # stale, e.g. a crash after the rename
    assert latest_checkpoint(tmp_path) == iteration_dir(tmp_path, 12)
    (tmp_path / LATEST).unlink()  # checkpoints written before ``latest`` existed
    assert latest_iteration_dir(tmp_path) == iteration_dir(tmp_path, 12)


def test_incomplete_and_staged_iterations_are_ignored(tmp_path):
    first = _commit(tmp_path, 3)
    broken = iteration_dir(tmp_path, 4)
    broken.mkdir()
    (broken / META).write_text(json.dumps({"iteration": 4, "complete": False}))
    staging_dir(tmp_path, 5).mkdir()
    assert latest_checkpoint(tmp_path) == first
    assert latest_checkpoint(first) == first  # an iteration directory names itself
    assert json.loads((first / META).read_text()) == {"stage": "test", "iteration": 3, "complete": True}


def test_nothing_complete(tmp_path):
    assert latest_checkpoint(tmp_path / "missing") is None
    with pytest.raises(ValueError, match="no complete r1mega checkpoint"):
        latest_iteration_dir(tmp_path)
