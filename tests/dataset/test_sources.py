"""videoccam/dataset/sources.py: sources, globs and amounts; mixtures through VideoCCAMDataset."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, SiglipImageProcessor
from xtuner.utils import PROMPT_TEMPLATE

from videoccam.dataset.dataset import VideoCCAMDataset
from videoccam.dataset.records import RecordError
from videoccam.dataset.sources import DataSource, select_rows


def test_amounts_take_copies_then_a_seeded_subset_in_row_order():
    assert select_rows(10, 10, [0, 1]).tolist() == list(range(10))
    half = select_rows(10, 5, [0, 1])
    assert len(half) == 5 and len(set(half.tolist())) == 5 and half.tolist() == sorted(half.tolist())
    assert select_rows(10, 5, [0, 1]).tolist() == half.tolist()  # deterministic
    assert select_rows(10, 5, [1, 1]).tolist() != half.tolist()  # the seed decides which half
    twice = select_rows(10, 25, [0, 1])
    assert twice[:20].tolist() == list(range(10)) * 2 and len(set(twice[20:].tolist())) == 5
    assert len(select_rows(0, 3, [0])) == 0 and len(select_rows(4, 0, [0])) == 0


@pytest.mark.parametrize("spec, amount", [
    (dict(data_path="a"), 7), (dict(data_path="a", repeat=0.5), 4), (dict(data_path="a", repeat=2), 14),
    (dict(data_path="a", repeat=1.5), 11), (dict(data_path="a", num_samples=3), 3),
    (dict(data_path="a", num_samples=20), 20),
])  # fmt: skip
def test_amount_of_a_source(spec, amount):
    assert DataSource.from_config(spec).amount(7) == amount


@pytest.mark.parametrize("spec, message", [
    (dict(data_path="a", repeat=1, num_samples=2), "give repeat or num_samples, not both"),
    (dict(data_path="a", repeat=0), "repeat must be a number > 0"),
    (dict(data_path="a", num_samples=1.5), "num_samples must be an integer >= 1"),
    (dict(data_path="a", on_error="ignore"), "on_error must be one of"),
    (dict(data_path="a", ratio=0.5), r"unknown keys \['ratio'\]"),
    (dict(data_path=[]), "data_path must be a path or glob pattern"),
    ("a.jsonl", "a data source must be a dict"),
])  # fmt: skip
def test_bad_sources_are_named(spec, message):
    with pytest.raises(ValueError, match=message):
        DataSource.from_config(spec)


def test_files_expand_globs_in_sorted_order(tmp_path):
    for name in ("part-10.jsonl", "part-02.jsonl", "other.jsonl"):
        (tmp_path / name).write_text("")
    source = DataSource.from_config(dict(data_path=[str(tmp_path / "part-*.jsonl"), str(tmp_path / "other.jsonl")]))
    assert [Path(f).name for f in source.files()] == ["part-02.jsonl", "part-10.jsonl", "other.jsonl"]
    assert source.root_of(source.files()[0]) == str(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"the pattern .*nope-\*.jsonl matches no file"):
        DataSource.from_config(dict(data_path=str(tmp_path / "nope-*.jsonl"))).files()
    with pytest.raises(FileNotFoundError, match="data file not found"):
        DataSource.from_config(dict(data_path=str(tmp_path / "missing.jsonl"))).files()


# ------------------------------------------------------------------------------------------------------------
# Mixtures through the dataset
# ------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mixture(tmp_path_factory) -> Path:
    """An image instruction source (two shards) and a video instruction source with text-only records."""
    root = tmp_path_factory.mktemp("mixture")
    (root / "images").mkdir()
    (root / "videos").mkdir()
    (root / "images/a.jpg").write_bytes(b"jpg")
    (root / "videos/a.mp4").write_bytes(b"mp4")

    def record(i: int, kind: str | None) -> dict:
        prefix = f"<{kind}>\n" if kind else ""
        turns = [{"from": "human", "value": f"{prefix}question {i}"}, {"from": "gpt", "value": f"answer {i}"}]
        return {"id": f"{kind}{i}", **({kind: f"{kind}s/a.{'jpg' if kind == 'image' else 'mp4'}"} if kind else {}),
                "conversations": turns}  # fmt: skip

    for shard in range(2):
        lines = [record(shard * 5 + i, "image") for i in range(5)]
        (root / f"image_part{shard}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    video = [record(i, "video") for i in range(6)] + [record(100 + i, None) for i in range(2)]
    video.insert(3, {"id": "broken", "video": "videos/missing.mp4",
                     "conversations": [{"from": "human", "value": "<video>\nq"}, {"from": "gpt", "value": "a"}]})
    (root / "video.jsonl").write_text("".join(json.dumps(r) + "\n" for r in video))
    return root


@pytest.fixture(scope="module")
def make_mixture(tiny_models):
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_models / "qwen2"))
    processor = SiglipImageProcessor.from_pretrained(str(tiny_models / "siglip"))

    def make(sources, **kwargs):
        return VideoCCAMDataset(kwargs.pop("data_path", None), tokenizer, processor, PROMPT_TEMPLATE.qwen_chat,
                                num_queries=8, max_length=64, num_frames=4, data_sources=sources, **kwargs)

    return make


def _ids(dataset) -> list:
    return [dataset.sample(i).record_id for i in range(len(dataset))]


def test_mixture_amounts_are_deterministic_across_runs(mixture, make_mixture):
    sources = [dict(data_path=str(mixture / "image_part*.jsonl"), data_root=str(mixture), repeat=0.5),
               dict(data_path=str(mixture / "video.jsonl"), on_error="skip", num_samples=19)]  # fmt: skip
    first = make_mixture(sources)
    assert len(first) == 5 + 19 and first.num_media.tolist()[:5] == [1] * 5
    ids = _ids(first)
    assert len(set(ids[:5])) == 5 and all(i.startswith("image") for i in ids[:5])  # half of the 10 image records
    assert ids[5:21] == _ids(first)[5:21] and ids[5:13] == ids[13:21]  # 8 usable video-source records, twice
    assert sorted(ids[5:13]) == sorted([f"video{i}" for i in range(6)] + ["None100", "None101"])
    random.seed(123), np.random.seed(123), torch.manual_seed(123)  # the run's random state plays no part
    again = make_mixture(sources)
    assert _ids(again) == ids
    assert [e["id"] for e in again.skipped] == ["broken"] and again.skipped[0]["source"] == str(mixture / "video.jsonl")
    assert again.modality_length[-3:] == [abs(n) * (1 if m else -1) for n, m in
                                          zip(again.length[-3:], again.num_media.tolist()[-3:])]  # fmt: skip
    other_seed = make_mixture(sources, mixture_seed=1)
    assert _ids(other_seed)[:5] != ids[:5]


def test_a_source_with_raise_stops_on_its_first_bad_record(mixture, make_mixture):
    with pytest.raises(RecordError, match=r"video.jsonl line 4 \(record 3, 0-based; id='broken'\): video not found"):
        make_mixture([dict(data_path=str(mixture / "image_part0.jsonl")), dict(data_path=str(mixture / "video.jsonl"))])
    with pytest.raises(ValueError, match=r"give data_path / data_root .* or data_sources .*, not both"):
        make_mixture([dict(data_path=str(mixture / "video.jsonl"))], data_path=str(mixture / "video.jsonl"))
