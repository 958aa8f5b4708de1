"""Tests of videoccam/evaluation/store.py: the resumable prediction store."""

from __future__ import annotations

import json

import pytest

from videoccam.evaluation.store import PredictionStore


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
