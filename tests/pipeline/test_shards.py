"""Chunked shard files: a crash between append and manifest loses nothing and duplicates nothing."""

from __future__ import annotations

import json

import pytest

from r1mega.stages.shards import ShardWriter, check_plan, merge, read_progress


def recs(chunk: int, n: int = 2) -> list[dict]:
    return [{"id": f"c{chunk}-{i}", "prompt": "p", "response": "r"} for i in range(n)]


def lines(path) -> list[str]:
    return [json.loads(l)["id"] for l in path.read_text().splitlines()]


def test_chunks_from_several_ranks_merge_in_chunk_order(tmp_path):
    w0, w1 = ShardWriter(tmp_path, 0), ShardWriter(tmp_path, 1)
    w1.write_chunk(1, recs(1), {"kept": 2, "incorrect": 1})
    w0.write_chunk(0, recs(0, 3), {"kept": 3})
    w0.write_chunk(2, [], {"incorrect": 4})
    assert sorted(read_progress(tmp_path)) == [0, 1, 2]
    totals = merge(tmp_path, 3, tmp_path / "data.jsonl")
    assert lines(tmp_path / "data.jsonl") == ["c0-0", "c0-1", "c0-2", "c1-0", "c1-1"]
    assert dict(totals) == {"kept": 5, "incorrect": 5, "records": 5}


def test_crash_after_append_before_manifest_is_undone(tmp_path):
    w = ShardWriter(tmp_path, 0)
    w.write_chunk(0, recs(0), {"kept": 2})
    with open(tmp_path / "rank_00000.jsonl", "a") as fh:  # chunk 1 appended, then the process died
        fh.write(json.dumps(recs(1)[0]) + "\n" + '{"id": "c1-1", "pro')
    again = ShardWriter(tmp_path, 0)  # the rerun truncates back to the end of chunk 0
    assert sorted(read_progress(tmp_path)) == [0]
    again.write_chunk(1, recs(1), {"kept": 2})
    merge(tmp_path, 2, tmp_path / "out.jsonl")
    assert lines(tmp_path / "out.jsonl") == ["c0-0", "c0-1", "c1-0", "c1-1"]


def test_merge_refuses_missing_chunks(tmp_path):
    ShardWriter(tmp_path, 0).write_chunk(0, recs(0), {})
    with pytest.raises(RuntimeError, match=r"chunks \[1\]"):
        merge(tmp_path, 2, tmp_path / "out.jsonl")
    assert not (tmp_path / "out.jsonl").exists()


def test_plan_mismatch_is_refused_with_the_difference(tmp_path):
    check_plan(tmp_path, {"prompts": 8, "chunk_prompts": 4})
    check_plan(tmp_path, {"prompts": 8, "chunk_prompts": 4})
    with pytest.raises(ValueError, match=r"chunk_prompts: 4 -> 2"):
        check_plan(tmp_path, {"prompts": 8, "chunk_prompts": 2})
