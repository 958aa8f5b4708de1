"""Tests of videoccam/evaluation/store.py: the resumable prediction store."""

from __future__ import annotations

import json

import pytest

from videoccam.evaluation.store import PredictionStore, prediction_files, read_predictions, shard_path, write_predictions


def test_store_append_resume_and_truncated_tail(tmp_path) -> None:
    path = tmp_path / "p" / "predictions_f8.jsonl"
    store = PredictionStore(path, 8)
    store.add_many([{"variant": "default", "uid": "q1", "reply": "A"},
                    {"variant": "default", "uid": "q2", "reply": "B"}])
    # Simulate a crash in the middle of writing a third record.
    with open(path, "a", encoding="utf-8") as f:
        f.write('{"variant": "default", "uid": "q3", "rep')
    reopened = PredictionStore(path, 8)
    assert len(reopened) == 2 and ("default", "q2") in reopened and ("default", "q3") not in reopened
    reopened.add_many([{"variant": "default", "uid": "q3", "reply": "C"}])
    lines = path.read_text().splitlines()
    assert [json.loads(x)["uid"] for x in lines] == ["q1", "q2", "q3"]
    assert PredictionStore(path, 8).get("default", "q3")["reply"] == "C"


def test_store_rejects_other_frame_count_and_garbage(tmp_path) -> None:
    path = tmp_path / "predictions_f8.jsonl"
    PredictionStore(path, 8).add_many([{"variant": "default", "uid": "q1", "reply": "A"}])
    with pytest.raises(ValueError, match="record for 8 frames in the store of 16 frames"):
        PredictionStore(path, 16)
    path.write_text("not json\n")
    with pytest.raises(ValueError, match="predictions_f8.jsonl:1: malformed"):
        PredictionStore(path, 8)


def test_store_stamps_and_checks_the_run(tmp_path) -> None:
    path = tmp_path / "predictions_f8.rank1.jsonl"
    m1, m2 = {"model": "/m1", "data": "/d"}, {"model": "/m2", "data": "/d"}
    PredictionStore(path, 8, run=m1).add_many([{"variant": "default", "uid": "q1", "reply": "A"}])
    assert json.loads(path.read_text())["run"] == m1
    assert len(PredictionStore(path, 8, run=m1)) == 1
    with pytest.raises(ValueError, match=r"predictions_f8.rank1.jsonl:1: a prediction of another run \(model: "
                                         r"'/m1' there, '/m2' in this run\); move the file"):
        PredictionStore(path, 8, run=m2)
    legacy = tmp_path / "predictions_f8.jsonl"  # records written without a run identity are accepted
    PredictionStore(legacy, 8).add_many([{"variant": "default", "uid": "q2", "reply": "B"}])
    assert read_predictions(legacy, 8, run=m2)[("default", "q2")]["reply"] == "B"


def test_reading_another_writers_file_leaves_its_partial_line(tmp_path) -> None:
    path = tmp_path / "predictions_f4.rank0.jsonl"
    PredictionStore(path, 4).add_many([{"variant": "default", "uid": "q1", "reply": "A"}])
    with open(path, "a", encoding="utf-8") as f:
        f.write('{"variant": "default", "uid": "q2"')  # its writer is busy writing this line
    size = path.stat().st_size
    assert list(read_predictions(path, 4)) == [("default", "q1")]
    assert path.stat().st_size == size  # not cut: only the writer repairs its own file


def test_prediction_files_and_atomic_rewrite(tmp_path) -> None:
    for name in ("predictions_f4.rank10.jsonl", "predictions_f4.rank2.jsonl", "predictions_f4.jsonl",
                 "predictions_f40.jsonl", "predictions_f4.rankx.jsonl"):
        (tmp_path / name).write_text("")
    assert [p.name for p in prediction_files(tmp_path, 4)] == ["predictions_f4.jsonl", "predictions_f4.rank2.jsonl",
                                                               "predictions_f4.rank10.jsonl"]  # fmt: skip
    assert shard_path(tmp_path, 4, 3).name == "predictions_f4.rank3.jsonl"
    write_predictions(tmp_path / "predictions_f4.jsonl", [{"uid": "a"}, {"uid": "b"}])
    assert (tmp_path / "predictions_f4.jsonl").read_text() == '{"uid": "a"}\n{"uid": "b"}\n'
    assert not list(tmp_path.glob("*.tmp"))
