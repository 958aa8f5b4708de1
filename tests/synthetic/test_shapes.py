"""videoccam/synthetic/shapes.py: schema, files decode, answers match pixels, determinism."""

from __future__ import annotations

import filecmp
import json
import os
import subprocess
import sys
import random
import re

import numpy as np
import pytest

from videoccam.dataset.video_io import get_video_info, load_image, load_video
from tests.conftest import ROOT
from videoccam.synthetic import shapes as synthetic

SMALL = dict(num_videos=6, num_images=4, num_text=4, num_val_videos=2)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return synthetic.generate(tmp_path_factory.mktemp("synthetic"), **SMALL)


def _records(data):
    return {name: json.loads(getattr(data, f"{name}_json").read_text()) for name in ("train", "val", "captions")}


def test_counts(data):
    records = _records(data)
    n_types = len(synthetic.VAL_QUESTION_TYPES)
    assert (data.num_train, data.num_val, data.num_captions) == (6 + 4 + 4, 2 * n_types, 6 + 4)
    assert {name: len(value) for name, value in records.items()} == {"train": 14, "val": 2 * n_types, "captions": 10}
    kinds = [("video" in r) + 2 * ("image" in r) for r in records["train"]]
    assert (kinds.count(1), kinds.count(2), kinds.count(0)) == (6, 4, 4)


def test_schema(data):
    """design.md section 4: id, optional video XOR image, alternating human/gpt turns, media token first."""
    for split, records in _records(data).items():
        ids = [record["id"] for record in records]
        assert len(set(ids)) == len(ids), f"duplicate ids in {split}"
        for record in records:
            assert set(record) <= {"id", "video", "image", "conversations", "task"}, record
            if split == "val":
                assert record["id"].endswith("_" + record["task"]) and record["task"] in synthetic.VAL_QUESTION_TYPES
            assert not ("video" in record and "image" in record)
            turns = record["conversations"]
            assert len(turns) >= 2 and len(turns) % 2 == 0
            assert [turn["from"] for turn in turns] == ["human", "gpt"] * (len(turns) // 2)
            assert all(set(turn) == {"from", "value"} and turn["value"].strip() for turn in turns)
            token = "<video>" if "video" in record else "<image>" if "image" in record else None
            text = "".join(turn["value"] for turn in turns)
            if token is None:
                assert "<video>" not in text and "<image>" not in text
            else:
                assert turns[0]["value"].startswith(token + "\n")
                assert text.count("<video>") + text.count("<image>") == 1


def test_multi_turn_and_question_types_present(data):
    records = _records(data)
    train = records["train"]
    assert any(len(r["conversations"]) > 2 and "video" in r for r in train)
    assert any(len(r["conversations"]) > 2 and "video" not in r and "image" not in r for r in train)
    questions = {
        turn["value"].removeprefix("<video>\n")
        for record in train + records["val"]
        for turn in record["conversations"]
        if turn["from"] == "human"
    }
    assert {"Which shape appears first?", "What appears last?", "How many shapes appear?",
            "Describe the video."} <= questions  # fmt: skip


def test_every_referenced_file_decodes(data):
    metadata = json.loads(data.metadata_json.read_text())
    for records in _records(data).values():
        for record in records:
            if "video" in record:
                path = data.root / record["video"]
                assert get_video_info(path) == (32, 8.0)
                frames = load_video(path, num_frames=16)
                assert len(frames) == 16 and frames[0].size == (64, 64)
            if "image" in record:
                assert load_image(data.root / record["image"]).size == (64, 64)
    assert len(metadata["videos"]) == 6 + 2 and len(metadata["images"]) == 4


def _nearest_color(pixel) -> str:
    palette = {**synthetic.COLORS, "background": synthetic.BACKGROUND}
    return min(palette, key=lambda name: float(np.sum((np.asarray(pixel) - np.array(palette[name])) ** 2)))


def test_answers_match_the_pixels(data):
    """Val answers follow the metadata, and the metadata's shapes are where and when it says."""
    metadata = {video["id"]: video for video in json.loads(data.metadata_json.read_text())["videos"]}
    for record in _records(data)["val"]:
        question_type = record["task"]
        scene_id = record["id"].removesuffix("_" + question_type)
        events = metadata[scene_id]["events"]
        names = [f"{event['color']} {event['shape']}" for event in events]
        expected = {
            "first": f"The {names[0]}.",
            "last": f"The {names[-1]}.",
            "count": f"{synthetic.NUMBER_WORDS[len(names)].capitalize()} shapes appear.",
            "describe": f"A {names[0]} appears" + "".join(f", then a {name}" for name in names[1:]) + ".",
            "first_color": f"{events[0]['color'].capitalize()}.",
            "last_color": f"{events[-1]['color'].capitalize()}.",
            "first_shape": f"{events[0]['shape'].capitalize()}.",
        }
        assert record["conversations"][1]["value"] == expected[question_type]
    for video in metadata.values():
        frames = load_video(data.root / video["video"], num_frames=video["num_frames"])
        for event in video["events"]:
            event = synthetic.ShapeEvent(**{k: tuple(v) if isinstance(v, list) else v for k, v in event.items()})
            t = (event.start_frame + event.end_frame) // 2
            x, y = (round(c) for c in event.center_at(t))
            pixel = np.asarray(frames[t], dtype=np.float32)[y - 1 : y + 2, x - 1 : x + 2].mean(axis=(0, 1))
            assert _nearest_color(pixel) == event.color, (video["id"], event, t)
    for image in json.loads(data.metadata_json.read_text())["images"]:
        x, y = (round(c) for c in image["center"])
        pixel = np.asarray(load_image(data.root / image["image"]), dtype=np.float32)[y, x]
        assert _nearest_color(pixel) == image["color"]


def test_words_cover_the_generated_text(data):
    """The tiny tokenizer is trained on tokenizer_corpus(): it must contain every word the data uses."""
    words = set(synthetic.WORDS)
    used = {
        word
        for records in _records(data).values()
        for record in records
        for turn in record["conversations"]
        for word in re.findall(r"[A-Za-z]+", turn["value"].replace("<video>", "").replace("<image>", ""))
    }
    assert used <= words, sorted(used - words)


def test_deterministic_and_seed_dependent(tmp_path):
    """Two runs of the generator (separate processes, as a user re-running the tool) write identical files.

    Within one process the files are not always byte-identical: PyAV's libx264 encodes of the same frames
    changed with what the process had loaded before (measured with PyAV 18.1, e.g. after importing decord or
    torch), so the comparison is between fresh processes."""

    def run(name: str, seed: int = 0) -> synthetic.GeneratedData:
        code = (f"from videoccam.synthetic import shapes; "
                f"shapes.generate({str(tmp_path / name)!r}, seed={seed}, **{SMALL!r})")  # fmt: skip
        subprocess.run([sys.executable, "-c", code], check=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
        return synthetic.generate(tmp_path / name, seed=seed, **SMALL)  # exists: read back, not rewritten

    first, again, other = run("first"), run("again"), run("other", seed=1)
    assert first.skipped and again.skipped
    comparison = filecmp.dircmp(first.root, again.root)
    assert not comparison.diff_files and not comparison.left_only and not comparison.right_only
    for sub in ("videos", "images"):
        names = sorted(path.name for path in (first.root / sub).iterdir())
        _, mismatch, errors = filecmp.cmpfiles(first.root / sub, again.root / sub, names, shallow=False)
        assert not mismatch and not errors
    assert other.train_json.read_text() != first.train_json.read_text()


def test_existing_dataset_is_kept_unless_forced(tmp_path):
    first = synthetic.generate(tmp_path, num_videos=1, num_images=1, num_text=1, num_val_videos=1)
    assert not first.skipped
    stamp = first.train_json.stat().st_mtime_ns
    second = synthetic.generate(tmp_path, num_videos=3)
    assert second.skipped and second.num_train == first.num_train
    assert first.train_json.stat().st_mtime_ns == stamp
    third = synthetic.generate(tmp_path, num_videos=2, num_images=0, num_text=0, num_val_videos=0, force=True)
    assert not third.skipped and third.num_train == 2
    assert sorted(p.name for p in (tmp_path / "videos").iterdir()) == ["train_0000.mp4", "train_0001.mp4"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [(dict(size=63), "even"), (dict(frames=3), "frames"), (dict(num_videos=-1), "num_videos"),
     (dict(encoder="x"), "encoder")],
)  # fmt: skip
def test_invalid_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        synthetic.generate(tmp_path, **kwargs)


def test_defaults(tmp_path):
    """The defaults are the quickstart's data: enough videos that the tiny model generalises to held-out ones."""
    result = synthetic.generate(tmp_path)
    assert (result.num_train, result.num_val, result.num_captions) == (
        400 + 100 + 24, 80 * len(synthetic.VAL_QUESTION_TYPES), 400 + 100)


# ----------------------------------------------------------------------------------------------------------------
# The temporal task
# ----------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def temporal(tmp_path_factory):
    return synthetic.generate_temporal(tmp_path_factory.mktemp("temporal"), num_train=6, num_test=4, frames=16)


def test_temporal_records_and_answers(temporal):
    train = json.loads(temporal.train_json.read_text())
    test = json.loads(temporal.test_json.read_text())
    assert (len(train), len(test), temporal.num_train, temporal.num_test) == (6, 4, 6, 4)
    scenes = {m["id"]: m for m in json.loads(temporal.metadata_json.read_text())}
    words = set(synthetic.WORDS)
    for record in train + test:
        scene = scenes[record["id"]]
        assert record["task"] == scene["task"] in synthetic.TEMPORAL_TASKS
        turns = [turn["value"] for turn in record["conversations"]]
        question, answer = turns[:2]
        assert question.startswith("<video>\n")
        if record in train:  # order: both questions; then a description, which cannot give an answer away
            asked = 2 if record["task"] == "order" else 1
            assert len(turns) == 2 * asked + 2 and turns[-2] in synthetic.VIDEO_CAPTION_PROMPTS
            names = [f"{e['color']} {e['shape']}" for e in scene["events"]]
            assert turns[-1] == (synthetic.describe_sequence(names) if record["task"] == "order" else
                                 synthetic.describe_motion(*names[0].split(), answer[:-1].lower()))
            if asked == 2:
                assert {turns[0].removeprefix("<video>\n"), turns[2]} == {"Which color appears first?",
                                                                          "Which color appears last?"}
                assert turns[3] == f"{scene['events'][0 if 'first' in turns[2] else -1]['color'].capitalize()}."
        else:
            assert len(turns) == 2
        events = scene["events"]
        if record["task"] == "order":
            assert 2 <= len(events) <= 3 and len({e["color"] for e in events}) == len(events)
            which = "first" if "first" in question else "last"
            assert answer == f"{events[0 if which == 'first' else -1]['color'].capitalize()}."
        else:
            (x0, y0), (x1, y1) = events[0]["start_center"], events[0]["end_center"]
            direction = {(1, 0): "Right", (-1, 0): "Left", (0, 1): "Down", (0, -1): "Up"}[
                (int((x1 > x0) - (x1 < x0)), int((y1 > y0) - (y1 < y0)))]
            assert answer == f"{direction}." and events[0]["shape"] in question
        frames = load_video(temporal.root / record["video"], num_frames=16)
        assert len(frames) == 16
    assert {r["task"] for r in test} == set(synthetic.TEMPORAL_TASKS)


@pytest.mark.parametrize(("direction", "opposite"), [("left", "right"), ("up", "down")])
def test_a_direction_reversed_is_the_opposite_direction(direction, opposite):
    """Only frame order tells the directions apart: a video played backwards is the opposite video, frame for
    frame, so a projector that sees a set of frames cannot answer (what the ablation relies on)."""
    scene = synthetic._direction_scene(random.Random(3), "a", 12, 64, direction)
    mirrored = synthetic._direction_scene(random.Random(3), "b", 12, 64, opposite)
    np.testing.assert_array_equal(synthetic.render_video(scene)[::-1], synthetic.render_video(mirrored))


def test_temporal_arguments(tmp_path):
    with pytest.raises(ValueError, match="num_train"):
        synthetic.generate_temporal(tmp_path, num_train=-1)
    with pytest.raises(ValueError, match="even"):
        synthetic.generate_temporal(tmp_path, size=33)


def test_context_qa_answers_are_in_the_context():
    """The tiny LLMs' reading exercises: the answer's content words can be read off the description."""
    rng = random.Random(0)
    content = set(synthetic.COLORS) | set(synthetic.SHAPES) | set(synthetic.DIRECTIONS)
    for _ in range(300):
        context, question, answer = synthetic.context_qa(rng)
        words = {w.lower() for w in re.findall(r"[A-Za-z]+", answer)} & content
        context_words = {w.lower() for w in re.findall(r"[A-Za-z]+", context)}
        if "move" in question:  # "moves from the right to the left" -> "Left."
            context_words |= {d for d, (_, end) in synthetic.DIRECTIONS.items() if end in context_words}
        assert words <= context_words, (context, question, answer)
