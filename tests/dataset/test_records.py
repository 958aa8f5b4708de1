"""Record parsing: schema, placeholders and conversion to xtuner's conversation format."""

from __future__ import annotations

import json

import pytest

from videoccam.dataset.records import MediaItem, RecordError, load_records, parse_record


def rec(value: str = "<video>\nWhat happens?", **extra) -> dict:
    base = {"id": "r", "conversations": [{"from": "human", "value": value}, {"from": "gpt", "value": "A."}]}
    base.update(extra)
    return base


def test_video_record_maps_video_placeholder_to_xtuner_image_token(tmp_path):
    sample = parse_record(rec(video="v/a.mp4", num_frames=8), 3, "train.json", tmp_path)
    assert sample.kind == "video" and sample.media == (MediaItem("video", tmp_path / "v/a.mp4", 8),)
    assert sample.conversation == [{"input": "<image>\nWhat happens?", "output": "A."}]


def test_multi_turn_with_system_and_text_only(tmp_path):
    record = {
        "conversations": [
            {"from": "system", "value": "Be brief."},
            {"from": "human", "value": "Hi"},
            {"from": "gpt", "value": "Hello."},
            {"from": "human", "value": "Bye"},
            {"from": "gpt", "value": "Bye."},
        ]
    }
    sample = parse_record(record, 0, "f", tmp_path)
    assert sample.kind == "text"
    assert sample.conversation == [
        {"input": "Hi", "output": "Hello.", "system": "Be brief."},
        {"input": "Bye", "output": "Bye."},
    ]


@pytest.mark.parametrize(
    "record, message",
    [
        (rec("<video>\n<video>\nTwo?", video="a.mp4"), r"record 7 \(id='r'\): 2 media placeholders .* the record has "
                                                        r"one video; each image or video needs exactly one"),
        (rec("No placeholder", video="a.mp4"), r"0 media placeholders \(<image>/<video>\) .* the record has one video"),
        (rec("<image>\nWhere is the image?"), r"1 media placeholders .* the record has no image or video"),
        (rec("<image> and <video>?", media=[{"video": "a.mp4"}, {"image": "b.jpg"}, {"video": "c.mp4"}]),
         r"2 media placeholders .* the record has 3 media items \(video, image, video\)"),
        (rec(media=[{"video": "a.mp4"}], video="a.mp4"), r"has both 'media' and 'video'"),
        (rec(media=[]), r"'media' must be a non-empty list"),
        (rec(media=[{"vidoe": "a.mp4"}]), r"media item 0 must have exactly one of 'video' / 'image'"),
        (rec(media=[{"video": "a.mp4", "image": "b.jpg"}]), r"media item 0 must have exactly one of"),
        (rec(media=[{"video": "a.mp4", "num_frames": -1}]), r"media item 0 'num_frames' must be a positive integer"),
        (rec(media=["a.mp4"]), r"media item 0 must be an object"),
        ({"id": "r", "video": "a.mp4", "conversations": [{"from": "system", "value": "<video>"},
                                                          {"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}]},
         r"the system turn contains a media placeholder"),
        ({"id": "r", "video": "a.mp4", "conversations": [{"from": "human", "value": "<video>\nQ"}]},
         r"no answer turn"),
        ({"id": "r", "conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"},
                                       {"from": "human", "value": "Q2"}]}, r"the last human turn has no gpt answer"),
        ({"id": "r", "conversations": [{"from": "gpt", "value": "A"}]}, r"a gpt turn must follow a human turn"),
        (rec(video="a.mp4", image="b.jpg"), r"has both 'video' and 'image'"),
        (rec(video="a.mp4", num_frames=0), r"'num_frames' must be a positive integer, got 0"),
        ({"id": "r", "conversations": []}, r"'conversations' must be a non-empty list"),
        (rec(video=""), r"'video' must be a non-empty path string"),
        ({"id": "r", "conversations": [{"from": "bot", "value": "x"}]}, r"unknown 'from' 'bot'"),
    ],
)
def test_bad_records_name_file_record_and_problem(tmp_path, record, message):
    with pytest.raises(RecordError, match=message) as info:
        parse_record(record, 7, "data/train.json", tmp_path)
    assert str(info.value).startswith("data/train.json: record 7")


def test_several_media_map_to_placeholders_in_order_over_turns(tmp_path):
    record = {
        "id": "m", "num_frames": 4,
        "media": [{"video": "a.mp4"}, {"image": "b.jpg"}, {"video": "c", "num_frames": 2}],
        "conversations": [
            {"from": "human", "value": "<video>\nWhat happens? And here: <image>"}, {"from": "gpt", "value": "A."},
            {"from": "human", "value": "Now this one. <video>"}, {"from": "gpt", "value": "B."},
        ],
    }  # fmt: skip
    sample = parse_record(record, 0, "f", tmp_path)
    assert sample.kind == "mixed"
    assert sample.media == (MediaItem("video", tmp_path / "a.mp4", 4), MediaItem("image", tmp_path / "b.jpg", 4),
                            MediaItem("video", tmp_path / "c", 2))  # a record's num_frames is every item's default
    assert [turn["input"] for turn in sample.conversation] == ["<image>\nWhat happens? And here: <image>",
                                                              "Now this one. <image>"]
    two_videos = parse_record(dict(record, media=[{"video": "a.mp4"}, {"video": "b.mp4"}, {"video": "c.mp4"}]), 0,
                              "f", tmp_path)
    assert two_videos.kind == "video" and len(two_videos.media) == 3


def test_load_records_json_and_jsonl_and_errors(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps([rec(), rec()]))
    assert len(load_records(tmp_path / "a.json")) == 2
    (tmp_path / "b.jsonl").write_text(json.dumps(rec()) + "\n\n" + json.dumps(rec()) + "\n")
    assert len(load_records(tmp_path / "b.jsonl")) == 2
    (tmp_path / "c.jsonl").write_text(json.dumps(rec()) + "\n{broken\n")
    with pytest.raises(ValueError, match=r"c.jsonl: line 2 is not valid JSON"):
        load_records(tmp_path / "c.jsonl")
    (tmp_path / "d.json").write_text('{"not": "a list"}')
    with pytest.raises(ValueError, match=r"d.json: expected a JSON list of records, got dict"):
        load_records(tmp_path / "d.json")
    with pytest.raises(FileNotFoundError, match="data file not found"):
        load_records(tmp_path / "missing.json")
