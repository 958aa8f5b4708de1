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
        (rec("<video>\n<video>\nTwo?", video="a.mp4"), r"record 7 \(0-based; starts on line 9; id='r'\): has 2 <video> "
                                                        r"placeholders for 1 video; fix: remove one$"),
        (rec("No placeholder", video="a.mp4"), r"has no <video> or <image> placeholder for 1 video; fix: add one to a "
                                               r"human turn"),
        (rec("<image>\nWhere is the image?"), r"has 1 <image> placeholder for no image or video; fix: remove the "
                                              r"placeholder, or name the media"),
        (rec("<image> and <video>?", media=[{"video": "a.mp4"}, {"image": "b.jpg"}, {"video": "c.mp4"}]),
         r"has 1 <video> placeholder and 1 <image> placeholder for 2 videos and 1 image; fix: add one"),
        (rec("<video><video><video>", video="a.mp4"), r"has 3 <video> placeholders for 1 video; fix: remove 2 of them"),
        (rec(media=[{"video": "a.mp4"}], video="a.mp4"), r"has both 'media' and 'video'; fix: move 'video' into"),
        (rec(media=[]), r"'media' must be a non-empty list, got \[\]; fix: list the items as"),
        (rec(media=[{"vidoe": "a.mp4"}]), r"media item 0 has keys \['vidoe'\]; fix: give it exactly one of 'video'"),
        (rec(media=[{"video": "a.mp4", "image": "b.jpg"}]), r"media item 0 has keys \['image', 'video'\]; fix: give"),
        (rec(media=[{"video": "a.mp4", "num_frames": -1}]), r"media item 0 'num_frames' must be a positive integer"),
        (rec(media=["a.mp4"]), r"media item 0 must be an object, got 'a.mp4'; fix: write it as"),
        ({"id": "r", "video": "a.mp4", "conversations": [{"from": "system", "value": "<video>"},
                                                          {"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}]},
         r"the system turn contains <video>; fix: move the placeholder into a human turn"),
        ({"id": "r", "video": "a.mp4", "conversations": [{"from": "human", "value": "<video>\nQ"}]},
         r"no answer turn.*; fix: add the answer as a gpt turn"),
        ({"id": "r", "conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"},
                                       {"from": "human", "value": "Q2"}]}, r"the last human turn has no gpt answer"),
        ({"id": "r", "conversations": [{"from": "gpt", "value": "A"}]}, r"turn 0 is a gpt turn without a human turn "
                                                                         r"before it; fix: put the question"),
        (rec(video="a.mp4", image="b.jpg"), r"has both 'video' and 'image'; fix: list both under \"media\""),
        (rec(video="a.mp4", num_frames=0), r"'num_frames' must be a positive integer, got 0; fix: give a whole number"),
        ({"id": "r", "conversations": []}, r"'conversations' is \[\]; fix: give a list of turns"),
        ({"id": "r"}, r"'conversations' is missing; fix: give a list of turns"),
        (rec(video=""), r"'video' must be a non-empty path string, got ''; fix: give the file's path"),
        ({"id": "r", "conversations": [{"from": "bot", "value": "x"}]},
         r"turn 0 has unknown 'from' 'bot'; fix: use 'human' for questions and 'gpt' for answers"),
    ],
)
def test_bad_records_name_file_record_line_problem_and_fix(tmp_path, record, message):
    with pytest.raises(RecordError, match=message) as info:
        parse_record(record, 7, "data/train.json", tmp_path, line=9)
    assert str(info.value).startswith("data/train.json record 7 (0-based; starts on line 9; id='r'): ")
    assert "; fix: " in str(info.value) and info.value.fix


def test_a_jsonl_record_is_named_by_its_line_and_its_0_based_index():
    error = RecordError("t.jsonl", 3, "a", "video not found: v.mp4", "media_missing", line=5)
    assert str(error) == ("t.jsonl line 5 (record 3, 0-based; id='a'): video not found: v.mp4; fix: correct the path "
                          "in the record, or put the file there")  # fmt: skip
    assert str(RecordError("t.json", 3, None, "x", "schema")).startswith("t.json record 3 (0-based): x; fix: ")
    pointed = error.with_pointer("see tools/validate_data.py")
    assert str(pointed) == f"{error}\nsee tools/validate_data.py" and pointed.text == str(error)
    assert str(RecordError.from_dict(error.as_dict())) == str(error)


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
    with pytest.raises(ValueError, match=r"c.jsonl line 2 \(record 1, 0-based\): not valid JSON: .*; fix: repair"):
        load_records(tmp_path / "c.jsonl")
    (tmp_path / "d.json").write_text('{"not": "a list"}')
    with pytest.raises(ValueError, match=r"d.json: expected a JSON list of records, got dict"):
        load_records(tmp_path / "d.json")
    with pytest.raises(FileNotFoundError, match="data file not found"):
        load_records(tmp_path / "missing.json")


def test_missing_files_get_the_nearest_name_of_their_folder_listed_once(tmp_path, monkeypatch):
    from videoccam.dataset import records

    (tmp_path / "v").mkdir()
    for name in ("clip_001.mp4", "clip_002.mp4", "clip_003.mp4", "notes.txt"):
        (tmp_path / "v" / name).write_bytes(b"x")
    listed = []
    scandir = records.os.scandir
    monkeypatch.setattr(records.os, "scandir", lambda path: listed.append(path) or scandir(path))
    names = records.NearbyNames()
    assert names.hint(tmp_path / "v/clip_0002.mp4") == " (did you mean clip_002.mp4?)"
    assert names.hint(tmp_path / "v/clip_003.mkv") == " (did you mean clip_003.mp4?)"
    assert names.hint(tmp_path / "v/something_else.avi") == ""  # nothing close: no guess
    assert names.hint(tmp_path / "w/clip_001.mp4") == f" (its folder {tmp_path / 'w'} does not exist: check the data " \
                                                      "root and the path)"  # fmt: skip
    assert listed == [tmp_path / "v"]  # one listing for the folder, whatever the number of missing files
    capped = records.NearbyNames(max_entries=3)  # a folder too large to match against: no suggestion
    assert capped.hint(tmp_path / "v/clip_0002.mp4") == ""
    (tmp_path / "big").mkdir()  # many similar names: the typo's neighbours in sorted order still hold its file
    for i in range(3000):
        (tmp_path / "big" / f"clip_{i:05d}.mp4").touch()
    assert names.hint(tmp_path / "big/clp_01234.mp4") == " (did you mean clip_01234.mp4?)"
    assert names.hint(tmp_path / "big/clip_01234.mpp4") == " (did you mean clip_01234.mp4?)"
    assert names.hint(tmp_path / "big/Clip_02999.mp4") == " (did you mean clip_02999.mp4?)"
    sample = parse_record(rec(video="v/clip_0002.mp4", subtitles="v/clip_001.srtt"), 0, "d.jsonl", tmp_path, 1)
    with pytest.raises(RecordError, match=r"video not found: .*clip_0002.mp4 \(did you mean clip_002.mp4\?\); fix: "):
        records.check_media_path(sample, "d.jsonl", names)
    sample.media = ()
    with pytest.raises(RecordError, match=r"d.jsonl line 1 \(record 0, 0-based; id='r'\): subtitles file not found: "
                                          r".*clip_001.srtt \(did you mean clip_001.mp4\?\); fix: correct the "
                                          r"'subtitles' path"):
        records.check_media_path(sample, "d.jsonl", names)
