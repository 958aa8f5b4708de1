"""Tests for videoccam/dataset/dataset.py: sampling through the dataset, media kinds, truncation, on_error."""

from __future__ import annotations

import copy
import json
import pickle
from pathlib import Path

import pytest
import torch
from PIL import Image
from transformers import AutoTokenizer, SiglipImageProcessor
from xtuner.utils import PROMPT_TEMPLATE

from tests.conftest import load_tool
from tests.dataset import corpus
from videoccam.dataset.collate import videoccam_collate_fn
from videoccam.dataset.dataset import VideoCCAMDataset
from videoccam.dataset.records import RecordError, load_records
from videoccam.model.hf.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX
from videoccam.model.videoccam_model import normalize_pixels

NUM_QUERIES, MAX_LENGTH = 32, 512


@pytest.fixture(scope="module")
def parts(tiny_models):
    return {
        "tokenizer": AutoTokenizer.from_pretrained(str(tiny_models / "qwen2")),
        "image_processor": SiglipImageProcessor.from_pretrained(str(tiny_models / "siglip")),
    }


@pytest.fixture
def make_dataset(parts):
    def make(data_path, **kwargs):
        options = dict(template=PROMPT_TEMPLATE.qwen_chat, num_queries=NUM_QUERIES, max_length=MAX_LENGTH, **parts)
        options.update(kwargs)
        return VideoCCAMDataset(str(data_path), **options)

    return make


def _write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _video_record(rid: str, video: str, **extra) -> dict:
    return {"id": rid, "video": video, **extra, "conversations": [
        {"from": "human", "value": "<video>\nWhich shape appears first?"}, {"from": "gpt", "value": "The red square."}]}


@pytest.fixture(scope="module")
def built_corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    corpus.build_corpus(root)
    return root


@pytest.fixture(scope="module")
def counter_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("counter")
    corpus.write_counter_video(root / "counter.mp4")  # 100 frames at 25 fps
    return root


# --------------------------------------------------------------------------------------------------
# Frame sampling through the dataset: exact source frames, read back from the pixels
# --------------------------------------------------------------------------------------------------


UNIFORM_16 = [3, 9, 15, 21, 28, 34, 40, 46, 53, 59, 65, 71, 78, 84, 90, 96]


def test_uniform_sampling_exact_indices(make_dataset, counter_dir):
    data = _write(counter_dir / "uniform.jsonl", [
        _video_record("all", "counter.mp4"),
        _video_record("own", "counter.mp4", num_frames=4),  # a record's num_frames overrides the dataset's
    ])  # fmt: skip
    dataset = make_dataset(data, num_frames=16)
    assert corpus.read_counter(dataset[0]["pixel_values"]) == UNIFORM_16
    assert corpus.read_counter(dataset[1]["pixel_values"]) == [12, 37, 62, 87]
    dataset = make_dataset(data, num_frames=8)
    assert corpus.read_counter(dataset[0]["pixel_values"]) == [6, 18, 31, 43, 56, 68, 81, 93]


def test_fps_sampling_exact_indices(make_dataset, counter_dir):
    data = _write(counter_dir / "fps.jsonl", [
        _video_record("all", "counter.mp4"),
        _video_record("own", "counter.mp4", num_frames=3),  # with fps sampling it caps the frame count
    ])  # fmt: skip
    dataset = make_dataset(data, sampling="fps", target_fps=2.0)  # 25 fps video: a frame every 12.5
    assert corpus.read_counter(dataset[0]["pixel_values"]) == [6, 18, 31, 43, 56, 68, 81, 93]
    assert corpus.read_counter(dataset[1]["pixel_values"]) == [16, 49, 83]  # over the cap: uniform 3
    dataset = make_dataset(data, sampling="fps", target_fps=2.0, max_frames=4)
    assert corpus.read_counter(dataset[0]["pixel_values"]) == [12, 37, 62, 87]


def test_sampling_arguments_are_checked(make_dataset, counter_dir):
    data = _write(counter_dir / "one.jsonl", [_video_record("all", "counter.mp4")])
    with pytest.raises(ValueError, match="target_fps"):
        make_dataset(data, sampling="fps")
    with pytest.raises(ValueError, match="sampling must be one of"):
        make_dataset(data, sampling="random")
    with pytest.raises(ValueError, match="num_frames must be in"):
        make_dataset(data, num_frames=NUM_QUERIES + 1)


# --------------------------------------------------------------------------------------------------
# Media kinds: frame folders (natural order), GIFs, images, text
# --------------------------------------------------------------------------------------------------

RED, GREEN, BLUE, YELLOW = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)


def _colours(pixel_values: torch.Tensor) -> list[tuple[int, int, int]]:
    if pixel_values.dtype == torch.uint8:  # the dataset's resized frames (normalize_in_model)
        pixel_values = pixel_values.float() / 127.5 - 1
    rgb = ((pixel_values.mean(dim=(2, 3)) + 1) * 127.5).round().to(torch.int64)  # [t, 3]
    return [tuple(int(round(c / 255) * 255) for c in row) for row in rgb.tolist()]


def test_frame_folder_and_gif_load_through_the_dataset(make_dataset, tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for name, colour in (("1.png", RED), ("2.png", GREEN), ("10.png", BLUE)):  # natural order: 1, 2, 10
        Image.new("RGB", (32, 32), colour).save(folder / name)
    (folder / "notes.txt").write_text("ignored")
    gif = [Image.new("RGB", (16, 16), colour) for colour in (RED, GREEN, BLUE, YELLOW)]
    gif[0].save(tmp_path / "anim.gif", save_all=True, append_images=gif[1:], duration=100, loop=0)
    Image.new("RGB", (40, 30), YELLOW).save(tmp_path / "image.png")
    data = _write(tmp_path / "kinds.jsonl", [
        _video_record("folder", "frames"),
        _video_record("gif", "anim.gif"),
        {"id": "image", "image": "image.png", "conversations": [
            {"from": "human", "value": "<image>\nWhat color is the shape?"}, {"from": "gpt", "value": "Yellow."}]},
        {"id": "text", "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello."}]},
    ])  # fmt: skip
    dataset = make_dataset(data, num_frames=16)
    assert [dataset.sample(i).kind for i in range(len(dataset))] == ["video", "video", "image", "text"]
    folder_item, gif_item, image_item, text_item = (dataset[i] for i in range(4))
    assert folder_item["pixel_values"].shape == (3, 3, 64, 64)  # resized to the tiny SigLIP's 64x64
    assert _colours(folder_item["pixel_values"]) == [RED, GREEN, BLUE]
    assert _colours(gif_item["pixel_values"]) == [RED, GREEN, BLUE, YELLOW]
    assert _colours(image_item["pixel_values"]) == [YELLOW]
    assert "pixel_values" not in text_item
    batch = videoccam_collate_fn([folder_item, gif_item, image_item, text_item])["data"]
    assert batch["num_frames"] == [3, 4, 1]
    assert batch["pixel_values"].shape == (8, 3, 64, 64)
    assert (batch["input_ids"] == IMAGE_TOKEN_INDEX).sum() == 3


def test_batched_preprocessing_matches_the_image_processor(make_dataset, built_corpus):
    fast = make_dataset(built_corpus / "corpus.jsonl", on_error="skip")
    slow = make_dataset(built_corpus / "corpus.jsonl", on_error="skip", fast_image_processing=False)
    assert fast.batch_processor is not None and slow.batch_processor is None
    for i in range(len(fast)):
        sample = fast.sample(i)
        if sample.kind == "text" or sample.index in corpus.BAD:
            continue
        item = fast[i]
        assert item["pixel_values"].dtype == torch.uint8 and torch.equal(item["pixel_affine"], fast.batch_processor.affine)
        a, b = normalize_pixels(item["pixel_values"], item["pixel_affine"]), slow[i]["pixel_values"]
        assert a.shape == b.shape and a.dtype == b.dtype == torch.float32
        torch.testing.assert_close(a, b, atol=4 / 255 + 1e-6, rtol=0)  # at most 2 uint8 steps (std 0.5)


def test_uint8_frames_from_workers_equal_the_in_process_pixel_values(make_dataset, built_corpus):
    """Workers return resized uint8 frames; normalised on the model's side they are the in-process float values."""
    in_process = make_dataset(built_corpus / "corpus.jsonl", on_error="skip", normalize_in_model=False)
    workers = make_dataset(built_corpus / "corpus.jsonl", on_error="skip")
    assert not in_process.normalize_in_model and workers.normalize_in_model
    loader = torch.utils.data.DataLoader(workers, batch_size=3, num_workers=2, collate_fn=videoccam_collate_fn)
    for start, batch in zip(range(0, len(workers), 3), loader):
        data = batch["data"]
        if data.get("pixel_values") is None:
            continue
        assert data["pixel_values"].dtype == torch.uint8 and data["pixel_values"].is_shared()
        expected = videoccam_collate_fn([in_process[i] for i in range(start, min(start + 3, len(workers)))])["data"]
        assert expected["pixel_values"].dtype == torch.float32 and "pixel_affine" not in expected
        assert data["num_frames"] == expected["num_frames"]
        torch.testing.assert_close(normalize_pixels(data["pixel_values"], data["pixel_affine"]),
                                   expected["pixel_values"], rtol=0, atol=1e-6)  # fmt: skip


# --------------------------------------------------------------------------------------------------
# Tokenisation and truncation
# --------------------------------------------------------------------------------------------------


def test_truncation_only_after_the_placeholder(make_dataset, tmp_path):
    long_answer = "The red square appears first, then the green circle. " * 60
    data = _write(tmp_path / "long.jsonl", [
        {"id": "long_answer", "video": "v.mp4", "conversations": [
            {"from": "human", "value": "<video>\nDescribe the video."}, {"from": "gpt", "value": long_answer}]},
        {"id": "long_system", "video": "v.mp4", "conversations": [
            {"from": "system", "value": "Answer briefly. " * 300},
            {"from": "human", "value": "<video>\nDescribe the video."}, {"from": "gpt", "value": "Two shapes."}]},
    ])  # fmt: skip
    (tmp_path / "v.mp4").write_bytes(b"not decoded here")
    dataset = make_dataset(data, on_error="skip")
    assert len(dataset) == 1
    tokens = dataset.tokens(0)
    assert dataset.indexes[0].column("truncated").tolist() == [True]
    assert len(tokens["input_ids"]) == MAX_LENGTH - NUM_QUERIES + 1  # the text budget, exactly
    assert dataset.modality_length[0] == MAX_LENGTH  # text + visual tokens fill the context
    assert tokens["input_ids"].count(IMAGE_TOKEN_INDEX) == 1
    assert any(label != IGNORE_INDEX for label in tokens["labels"])  # part of the answer is kept
    (skipped,) = dataset.skipped
    assert skipped["index"] == 1 and skipped["category"] == "too_long"
    assert "placeholder" in skipped["reason"] and "cut through the visual tokens" in skipped["reason"]


def test_answer_token_counts_are_the_trained_labels_of_each_sample(make_dataset, tmp_path):
    """``answer_token_counts[i]`` = labels != IGNORE_INDEX of sample i after truncation, as a 1-D integer array
    (what TokenMeanTrainLoop counts a step's answer tokens from without loading the samples)."""
    long_answer = "The red square appears first, then the green circle. " * 60
    data = _write(tmp_path / "counts.jsonl", [
        {"id": "text", "conversations": [{"from": "human", "value": "Hi?"}, {"from": "gpt", "value": "Hello."}]},
        {"id": "long", "video": "v.mp4", "conversations": [
            {"from": "human", "value": "<video>\nDescribe the video."}, {"from": "gpt", "value": long_answer}]},
        {"id": "two_turns", "image": "v.mp4", "conversations": [
            {"from": "human", "value": "<image>\nWhat is it?"}, {"from": "gpt", "value": "A circle."},
            {"from": "human", "value": "Which colour?"}, {"from": "gpt", "value": "Green."}]},
    ])  # fmt: skip
    (tmp_path / "v.mp4").write_bytes(b"not decoded here")
    dataset = make_dataset(data)
    counts = dataset.answer_token_counts
    assert counts.ndim == 1 and counts.dtype.kind == "i" and len(counts) == len(dataset) == 3
    tokens = [dataset.tokens(i) for i in range(len(dataset))]
    expected = [sum(label != IGNORE_INDEX for label in t["labels"]) for t in tokens]
    assert counts.tolist() == expected and all(expected)
    # counted after truncation: the long sample was cut to max_length, its answer alone is longer
    assert len(tokens[1]["input_ids"]) - 1 + dataset.num_queries == dataset.max_length
    assert len(dataset.tokenizer(long_answer).input_ids) > dataset.max_length
    batch = videoccam_collate_fn([{"input_ids": t["input_ids"], "labels": t["labels"]} for t in tokens])
    assert int((batch["data"]["labels"][:, 1:] != IGNORE_INDEX).sum()) == int(counts.sum())


def test_answer_cut_away_is_an_error_not_a_silent_drop(make_dataset, built_corpus):
    with pytest.raises(RecordError, match=r"record 11, 0-based; id='too_long'\): too long: .* remove the whole answer"):
        _only(make_dataset, built_corpus, [11])


def _only(make_dataset, root: Path, indices: list[int]):
    """A dataset over some records of the corpus, keeping their original positions (others become good)."""
    records = load_records(root / "corpus.jsonl")
    good = records[0]
    subset = [records[i] if i in indices else good for i in range(len(records))]
    return make_dataset(_write(root / f"only_{'_'.join(map(str, indices))}.jsonl", subset))


# --------------------------------------------------------------------------------------------------
# on_error
# --------------------------------------------------------------------------------------------------


def test_on_error_raise_stops_at_the_first_bad_record(make_dataset, built_corpus):
    with pytest.raises(RecordError) as info:
        make_dataset(built_corpus / "corpus.jsonl")
    message = str(info.value)
    assert "corpus.jsonl line 4 (record 3, 0-based; id='zero_bytes')" in message and "empty (0 bytes)" in message
    assert str(built_corpus / "videos/zero.mp4") in message
    # a record that only fails when decoded raises when it is loaded, naming it the same way
    dataset = _only(make_dataset, built_corpus, [4])
    with pytest.raises(RecordError, match=r"line 5 \(record 4, 0-based; id='truncated'\): .*truncated.mp4: cannot "
                                          r"decode video.*; fix: replace or re-encode the file"):
        dataset[4]


def _stopping_error(make_dataset, data, **kwargs) -> str:
    with pytest.raises(RecordError) as info:
        make_dataset(data, **kwargs)
    return str(info.value)


def test_a_typo_in_a_video_path_names_the_line_the_nearest_file_and_what_to_do(make_dataset, tmp_path):
    """The error that stops training: file, line (a blank line before the record counts), 0-based index, the
    nearest existing name, the fix, and a last line pointing to validate_data.py and on_error=skip; the same text
    again when the run starts from the cached index."""
    (tmp_path / "videos").mkdir()
    for name in ("clip_001.mp4", "clip_002.mp4", "clip_003.mp4", "clip_010.mp4"):
        (tmp_path / "videos" / name).write_bytes(b"x")
    data = tmp_path / "train.jsonl"
    data.write_text(json.dumps(_video_record("a", "videos/clip_001.mp4")) + "\n\n"
                    + json.dumps(_video_record("typo", "videos/clp_002.mp4")) + "\n")  # fmt: skip
    index_dir = tmp_path / "index"
    message = _stopping_error(make_dataset, data, index_dir=str(index_dir))
    first, pointer = message.splitlines()
    assert first == (f"{data} line 3 (record 1, 0-based; id='typo'): video not found: {tmp_path}/videos/clp_002.mp4 "
                     "(did you mean clip_002.mp4?); fix: correct the path in the record, or put the file there")
    assert pointer == (f"on_error='raise' stops at the first bad record. List them all: python tools/validate_data.py "
                       f"{data} (add --config CONFIG to check lengths too); or skip bad records: --cfg-options "
                       "train_dataloader.dataset.on_error=skip")  # fmt: skip
    (meta,) = index_dir.glob("train-*/meta.json")
    built = meta.read_text()
    assert _stopping_error(make_dataset, data, index_dir=str(index_dir)) == message  # the cached index: same text
    assert list(index_dir.glob("train-*/meta.json")) == [meta] and meta.read_text() == built  # not rebuilt
    skipped = make_dataset(data, on_error="skip", index_dir=str(index_dir)).skipped
    assert [(e["index"], e["line"]) for e in skipped] == [(1, 3)]
    assert "did you mean clip_002.mp4?" in skipped[0]["reason"]
    # another media root: the pointer gives it to the validator; a missing folder is named as such
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps(_video_record("b", "vids/clip_001.mp4")) + "\n")
    message = _stopping_error(make_dataset, other, data_root=str(tmp_path / "media"))
    assert f"(its folder {tmp_path}/media/vids does not exist: check the data root and the path)" in message
    assert f"python tools/validate_data.py {other} --root {tmp_path / 'media'} (add" in message


def test_putting_a_missing_file_there_is_a_fix_that_works(make_dataset, tmp_path):
    """The index key holds the data file, not its media: a file added after the build is seen on the next start
    (a new index, built once) instead of a stale "not found"."""
    (tmp_path / "a.mp4").write_bytes(b"x")
    data = _write(tmp_path / "late.jsonl", [_video_record("a", "a.mp4"), _video_record("late", "late.mp4")])
    index_dir = str(tmp_path / "index")
    assert len(make_dataset(data, on_error="skip", index_dir=index_dir)) == 1
    (tmp_path / "late.mp4").write_bytes(b"x")
    fixed = make_dataset(data, index_dir=index_dir)  # on_error="raise": the record is good now
    assert len(fixed) == 2 and fixed.indexes[0].meta["fields"]["fixed_files"] == [str(tmp_path / "late.mp4")]
    again = make_dataset(data, index_dir=index_dir)
    assert again.indexes[0].path == fixed.indexes[0].path and again.indexes[0].meta == fixed.indexes[0].meta


def test_two_placeholders_for_one_video_says_remove_one(make_dataset, tmp_path):
    (tmp_path / "v.mp4").write_bytes(b"x")
    record = _video_record("two", "v.mp4")
    record["conversations"][0]["value"] = "<video>\n<video>\nWhich shape appears first?"
    data = _write(tmp_path / "two.jsonl", [_video_record("ok", "v.mp4"), record])
    assert _stopping_error(make_dataset, data).splitlines()[0] == (
        f"{data} line 2 (record 1, 0-based; id='two'): has 2 <video> placeholders for 1 video; fix: remove one")
    as_list = tmp_path / "two.json"
    as_list.write_text(json.dumps([_video_record("ok", "v.mp4"), record], indent=1))
    start = [n for n, line in enumerate(as_list.read_text().splitlines(), 1) if line == " {"][1]  # record 1's "{"
    assert _stopping_error(make_dataset, as_list).startswith(f"{as_list} record 1 (0-based; starts on line {start}; "
                                                             "id='two'): has 2 <video> placeholders")  # fmt: skip


def test_on_error_skip_drops_exactly_the_bad_records(make_dataset, built_corpus):
    dataset = make_dataset(built_corpus / "corpus.jsonl", on_error="skip")
    assert sorted(e["index"] for e in dataset.skipped) == corpus.BUILD_TIME
    for entry in dataset.skipped:
        category, words = corpus.BAD[entry["index"]]
        assert entry["category"] == category and words in entry["reason"], entry
    kept = [dataset.sample(i).index for i in range(len(dataset))]
    assert kept == sorted(set(range(corpus.NUM_RECORDS)) - set(corpus.BUILD_TIME))
    items = [dataset[i] for i in range(len(dataset))]
    markers = {item["skipped"]["index"]: item["skipped"] for item in items if "skipped" in item}
    assert sorted(markers) == sorted(set(corpus.BAD) - set(corpus.BUILD_TIME))
    for index, entry in markers.items():
        assert entry["category"] == corpus.BAD[index][0] and corpus.BAD[index][1] in entry["reason"]
    assert sorted(item["index"] for item in items if "skipped" not in item) == corpus.GOOD
    # deterministic: the same items again, no substitution by another sample
    assert [("skipped" in dataset[i]) for i in range(len(dataset))] == [("skipped" in x) for x in items]
    batch = videoccam_collate_fn(items)["data"]
    assert [e["index"] for e in batch["skipped"]] == sorted(markers)
    assert batch["input_ids"].shape[0] == len(corpus.GOOD)
    assert videoccam_collate_fn([items[kept.index(4)]])["data"] == {"skipped": [markers[4]]}


def test_skip_markers_travel_through_dataloader_workers(make_dataset, built_corpus):
    dataset = make_dataset(built_corpus / "corpus.jsonl", on_error="skip")
    loader = torch.utils.data.DataLoader(dataset, batch_size=3, num_workers=2, collate_fn=videoccam_collate_fn)
    skipped, rows, frames = [], 0, 0
    for batch in loader:
        data = batch["data"]
        skipped += [entry["index"] for entry in data["skipped"]]
        if "input_ids" in data:
            rows += data["input_ids"].shape[0]
            frames += 0 if data["pixel_values"] is None else data["pixel_values"].shape[0]
            assert data["pixel_values"] is None or data["pixel_values"].is_shared()  # built in shared memory
    assert sorted(skipped) == sorted(set(corpus.BAD) - set(corpus.BUILD_TIME))
    assert rows == len(corpus.GOOD)

    raising = _only(make_dataset, built_corpus, [4])
    loader = torch.utils.data.DataLoader(raising, batch_size=2, num_workers=2, collate_fn=videoccam_collate_fn)
    with pytest.raises(RecordError, match=r"record 4, 0-based; id='truncated'\).*cannot decode video"):
        list(loader)


def test_record_error_pickles_and_rebuilds_from_a_message():
    error = RecordError("a.jsonl", 7, "x", "video not found: v.mp4", "media_missing", 9, "rename it", pointer="pointer")
    copy = pickle.loads(pickle.dumps(error))
    assert str(copy) == str(error) == "a.jsonl line 9 (record 7, 0-based; id='x'): video not found: v.mp4; fix: " \
        "rename it\npointer"
    assert copy.as_dict() == error.as_dict()
    assert str(RecordError("whole message")) == "whole message"  # how DataLoader re-raises a worker's error
    with pytest.raises(ValueError, match="unknown RecordError category"):
        RecordError("a.jsonl", 1, None, "x", "nope")


def test_malformed_files_name_file_and_line(make_dataset, tmp_path):
    good = json.dumps(_video_record("a", "v.mp4"))
    (tmp_path / "v.mp4").write_bytes(b"x")
    jsonl = tmp_path / "bad.jsonl"
    jsonl.write_text(f"{good}\n\n{{\"id\": 1, \n{good}\n")
    with pytest.raises(ValueError, match=r"bad.jsonl line 3 \(record 1, 0-based\): not valid JSON: .*; fix: "
                                         r"repair the line"):
        make_dataset(jsonl)
    dataset = make_dataset(jsonl, on_error="skip")  # the malformed line is one skipped record
    assert [dataset.sample(i).index for i in range(len(dataset))] == [0, 2]
    assert dataset.skipped[0]["index"] == 1 and dataset.skipped[0]["category"] == "json"
    assert dataset.skipped[0]["line"] == 3 and "not valid JSON" in dataset.skipped[0]["reason"]
    as_list = tmp_path / "bad.json"
    as_list.write_text(f"[\n{good},\n{good}\n")
    with pytest.raises(ValueError, match=r"bad.json: not valid JSON at line 4"):
        make_dataset(as_list, on_error="skip")
    with pytest.raises(FileNotFoundError, match="data file not found"):
        make_dataset(tmp_path / "nope.jsonl")


def test_build_time_checks_num_frames_and_subtitles(make_dataset, tmp_path):
    (tmp_path / "v.mp4").write_bytes(b"x")
    data = _write(tmp_path / "checks.jsonl", [
        _video_record("ok", "v.mp4"),
        _video_record("many", "v.mp4", num_frames=NUM_QUERIES + 1),
        _video_record("subs", "v.mp4", subtitles="subs/none.srt"),
    ])  # fmt: skip
    dataset = make_dataset(data, on_error="skip")
    assert [(e["index"], e["category"]) for e in dataset.skipped] == [(1, "too_many_frames"), (2, "subtitles_missing")]
    assert "num_frames=33 > num_queries=32" in dataset.skipped[0]["reason"]


# --------------------------------------------------------------------------------------------------
# The index against the in-memory dataset it replaced; several media per record
# --------------------------------------------------------------------------------------------------


def test_samples_equal_the_in_memory_dataset_on_the_quickstart_data(make_dataset, parts, synthetic_data):
    """ids, labels and frames of every sample of the quickstart's data files equal the dataset before the index
    (tools/bench_dataset_scale.py's InMemoryDataset: xtuner's encode_fn, Python objects per record)."""
    reference_class = load_tool("bench_dataset_scale").InMemoryDataset
    for name in ("captions.json", "train.json"):
        new = make_dataset(synthetic_data / name, data_root=str(synthetic_data), num_frames=8)
        old = reference_class(str(synthetic_data / name), template=PROMPT_TEMPLATE.qwen_chat, num_queries=NUM_QUERIES,
                              max_length=MAX_LENGTH, data_root=str(synthetic_data), num_frames=8, **parts)  # fmt: skip
        assert len(new) == len(old) > 10 and new.modality_length == old.modality_length
        for i in range(len(new)):
            a, b = new[i], old[i]
            assert a["input_ids"] == b["input_ids"] and a["labels"] == b["labels"] and a["index"] == b["index"]
            assert ("pixel_values" in a) == ("pixel_values" in b)
            if "pixel_values" in a:
                assert torch.equal(a["pixel_values"], b["pixel_values"]) and a["num_frames"] == b["num_frames"]
        assert new.answer_token_counts.tolist() == [sum(x != IGNORE_INDEX for x in old.tokens[i]["labels"])
                                                    for i in range(len(old))]  # fmt: skip


def _multi_media_records(synthetic_data: Path) -> list[dict]:
    videos = sorted(p.relative_to(synthetic_data).as_posix() for p in (synthetic_data / "videos").glob("*.mp4"))
    images = sorted(p.relative_to(synthetic_data).as_posix() for p in (synthetic_data / "images").glob("*.jpg"))
    return [
        {"id": "multi", "media": [{"video": videos[0]}, {"image": images[0]}, {"video": videos[1], "num_frames": 2}],
         "conversations": [
             {"from": "human", "value": "<video>\nWhich shape appears first? And in this image <image>?"},
             {"from": "gpt", "value": "The red square, then a circle."},
             {"from": "human", "value": "<video>\nAnd in this one?"}, {"from": "gpt", "value": "A blue triangle."}]},
        _video_record("single", videos[2]),
        {"id": "text", "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello."}]},
    ]  # fmt: skip


def test_a_multi_media_record_trains_and_its_loss_equals_the_exported_models(trained, loaded, synthetic_data,
                                                                             tmp_path):  # fmt: skip
    data = _write(tmp_path / "multi.jsonl", _multi_media_records(synthetic_data))
    num_queries = trained.cfg.num_queries
    dataset = VideoCCAMDataset(str(data), trained.tokenizer, trained.image_processor, trained.template,
                               num_queries=num_queries, max_length=512, data_root=str(synthetic_data), num_frames=4)
    item = dataset[0]
    assert item["num_frames"] == [4, 1, 2] and item["pixel_values"].shape[0] == 7
    assert item["input_ids"].count(IMAGE_TOKEN_INDEX) == 3
    assert dataset.modality_length[0] == len(item["input_ids"]) + 3 * (num_queries - 1)  # every item counts
    assert dataset.num_media.tolist() == [3, 1, 0]
    batch = videoccam_collate_fn([dataset[i] for i in range(len(dataset))])["data"]
    assert batch["num_frames"] == [4, 1, 2, 4]

    model, _, _ = loaded
    ids = batch["input_ids"].masked_fill(batch["input_ids"] == IMAGE_TOKEN_INDEX, model.config.image_token_index)
    with torch.no_grad():
        training_loss = trained.model(batch, mode="loss")["loss"]
        exported_loss = model(input_ids=ids, attention_mask=batch["attention_mask"], labels=batch["labels"],
                              pixel_values=normalize_pixels(batch["pixel_values"], batch["pixel_affine"]),
                              num_frames=batch["num_frames"]).loss  # fmt: skip
    torch.testing.assert_close(training_loss, exported_loss, atol=1e-4, rtol=0)

    # and it trains: a few steps on the multi-media sample lower its loss
    student = copy.deepcopy(trained.model)
    optimizer = torch.optim.SGD([p for p in student.parameters() if p.requires_grad], lr=0.05)
    multi = videoccam_collate_fn([dataset[0]])["data"]
    losses = []
    for _ in range(4):
        loss = student(multi, mode="loss")["loss"]
        optimizer.zero_grad()
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in student.parameters() if p.grad is not None)
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0] - 0.1, losses


def test_multi_media_records_validate_and_a_wrong_placeholder_count_is_named(trained, synthetic_data, tmp_path):
    from videoccam.dataset.validate import validate_data
    from videoccam.dataset.video_io import FrameSampling

    records = _multi_media_records(synthetic_data)
    report = validate_data(_write(tmp_path / "multi.jsonl", records), synthetic_data, tokenizer=trained.tokenizer,
                           template=trained.template, num_queries=32, max_length=512,
                           sampling=FrameSampling(num_frames=4), progress=False)  # fmt: skip
    assert report.num_ok == 3 and [r.media_frames for r in report.results] == [[4, 1, 2], [4], None]
    records[0]["conversations"][2]["value"] = "And in this one?"  # 2 placeholders for 3 media items
    bad = _write(tmp_path / "bad.jsonl", records)
    report = validate_data(bad, synthetic_data, progress=False, decode=False)
    assert [(r.index, r.errors[0]["category"]) for r in report.bad] == [(0, "placeholders")]
    with pytest.raises(RecordError, match=r"bad.jsonl line 1 \(record 0, 0-based; id='multi'\): has 1 <video> "
                                          r"placeholder and 1 <image> placeholder for 2 videos and 1 image; "
                                          r"fix: add one"):
        VideoCCAMDataset(str(bad), trained.tokenizer, trained.image_processor, trained.template, num_queries=32,
                         max_length=512, data_root=str(synthetic_data), num_frames=4)
