"""Tests for videoccam/dataset/validate.py: every broken record is named with its index and reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer
from xtuner.utils import PROMPT_TEMPLATE

from tests.dataset import corpus
from videoccam.dataset.validate import validate_data
from videoccam.dataset.video_io import FrameSampling


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory) -> Path:
    return corpus.build_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def length_check(tiny_models) -> dict:
    return {"tokenizer": AutoTokenizer.from_pretrained(str(tiny_models / "qwen2")),
            "template": PROMPT_TEMPLATE.qwen_chat, "num_queries": 32, "max_length": 512}  # fmt: skip


def _check_bad(report) -> None:
    bad = {r.index: r for r in report.bad}
    assert sorted(bad) == sorted(corpus.BAD)
    for index, (category, words) in corpus.BAD.items():
        (error,) = bad[index].errors
        assert error["category"] == category and words in error["reason"], (index, error)
    ids = {r.index: r.record_id for r in report.results}
    assert ids[3] == "zero_bytes" and ids[11] == "too_long"
    assert report.num_ok == len(corpus.GOOD)


@pytest.mark.parametrize("pool, workers", [("thread", 2), ("thread", 1), ("process", 2)])
def test_corrupt_corpus(corpus_file, length_check, pool, workers):
    report = validate_data(corpus_file, **length_check, workers=workers, pool=pool, progress=False)
    _check_bad(report)
    assert report.error_counts == {"media_corrupt": 2, "media_empty": 2, "media_missing": 1, "no_answer": 1,
                                   "placeholders": 1, "too_long": 1}  # fmt: skip
    frames = {r.index: r.num_frames for r in report.results}
    # what the sampler takes: 16 of 32 video frames, all 8 of a folder/GIF, 1 for an image, the record's own 4
    assert frames[0] == 16 and frames[5] == 8 and frames[12] == 8 and frames[1] == 1 and frames[13] == 4
    assert frames[2] is None  # text-only
    text = report.format()
    for index, (category, _) in corpus.BAD.items():  # training's message: the line, the 0-based index, the fix
        assert f"BAD   [{category}] {corpus_file} line {index + 1} (record {index}, 0-based; id=" in text
    assert "has 2 <video> placeholders for 1 video; fix: remove one" in text
    assert "Totals: 14 records, 6 ok, 8 bad" in text
    as_json = json.loads(json.dumps(report.to_dict(), default=str))
    assert as_json["num_bad"] == 8 and sorted(r["index"] for r in as_json["records"]) == sorted(corpus.BAD)


def test_without_tokenizer_lengths_are_not_checked(corpus_file):
    report = validate_data(corpus_file, progress=False)
    assert not report.length_checked and "lengths NOT checked" in report.format()
    assert sorted(r.index for r in report.bad) == sorted(set(corpus.BAD) - {11})  # too_long needs the tokenizer
    report = validate_data(corpus_file, decode=False, progress=False)  # existence only: decode errors unseen
    assert sorted(r.index for r in report.bad) == [3, 7, 8, 9, 10]


def test_truncation_kept_answer_is_a_warning(tmp_path, length_check, corpus_file):
    root = corpus_file.parent
    records = [json.loads(line) for line in corpus_file.read_text().splitlines()]
    long_answer = {**records[0], "id": "long_answer", "extra": 1, "subtitle": "s.srt",
                   "conversations": [records[0]["conversations"][0],
                                     {"from": "gpt", "value": "The red square appears first. " * 150}]}  # fmt: skip
    data = tmp_path / "warn.jsonl"
    data.write_text(json.dumps(long_answer) + "\n" + json.dumps(records[0]) + "\n" + "{oops\n")
    report = validate_data(data, root, **length_check, progress=False)
    first, second, third = report.results
    assert first.ok and first.truncated and first.num_tokens > 512
    categories = {w["category"]: w["reason"] for w in first.warnings}
    assert "truncation keeps" in categories["truncated"] and "answer tokens" in categories["truncated"]
    assert "['extra', 'subtitle']" in categories["unknown_fields"]
    assert categories["unknown_fields"].endswith("; did you mean 'subtitle' -> 'subtitles'?")
    assert not second.warnings and second.ok
    assert third.errors[0]["category"] == "json" and "not valid JSON" in third.errors[0]["reason"]
    assert third.line == 3 and f"BAD   [json] {data} line 3 (record 2, 0-based): not valid JSON" in report.format()


def test_fps_sampling_and_too_many_frames(corpus_file):
    report = validate_data(corpus_file, num_queries=6, progress=False,
                           sampling=FrameSampling(sampling="fps", target_fps=4.0, max_frames=6))  # fmt: skip
    by_index = {r.index: r for r in report.results}
    # 32 frames at 8 fps sampled at 4 fps = 16 frames > max_frames 6 -> uniform 6; the record's own cap is 4
    assert by_index[0].num_frames == 6 and by_index[13].num_frames == 4
    report = validate_data(corpus_file, num_queries=6, sampling=FrameSampling(num_frames=16), progress=False)
    assert by_index[0].ok and {e["category"] for e in {r.index: r for r in report.results}[0].errors} == {
        "too_many_frames"}


def test_verdicts_equal_the_training_datasets(corpus_file, length_check, tiny_models):
    """A record is bad for the validator exactly when training's index drops it or loading its media fails."""
    from transformers import SiglipImageProcessor

    from videoccam.dataset.dataset import VideoCCAMDataset

    report = validate_data(corpus_file, **length_check, sampling=FrameSampling(num_frames=16), progress=False)
    dataset = VideoCCAMDataset(str(corpus_file), image_processor=SiglipImageProcessor.from_pretrained(
        str(tiny_models / "siglip")), on_error="skip", **length_check)  # fmt: skip
    training = {e["index"]: e["category"] for e in dataset.skipped}
    for i in range(len(dataset)):
        item = dataset[i]
        if "skipped" in item:
            training[item["skipped"]["index"]] = item["skipped"]["category"]
    assert training == {r.index: r.errors[0]["category"] for r in report.bad}
