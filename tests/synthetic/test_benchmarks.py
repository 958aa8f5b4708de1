"""videoccam/synthetic/benchmarks.py: the synthetic layouts are written where each evaluator reads them (the
evaluators' own tests run on them: tests/evaluation/)."""

from __future__ import annotations

import json

import pytest

from videoccam.dataset.video_io import get_video_info, list_frame_files
from videoccam.synthetic.benchmarks import MAKERS, make_all, srt_text


def test_layouts(synthetic_root):
    assert sorted(p.name for p in synthetic_root.iterdir()) == sorted(MAKERS)
    mvbench = synthetic_root / "mvbench"
    records = json.loads(next((mvbench / "json").glob("*.json")).read_text())
    assert {"video", "question", "candidates", "answer"} <= set(records[0])
    videos = sorted((mvbench / "video").rglob("*.mp4"))
    assert videos and get_video_info(videos[0]) == (48, 8.0)
    assert any(list_frame_files(folder) for folder in (mvbench / "video").rglob("clip0"))
    assert list((synthetic_root / "videomme" / "videomme").glob("*.parquet"))
    assert (synthetic_root / "videovista" / "VideoVista.json").is_file()
    with pytest.raises(ValueError, match="unknown benchmark"):
        make_all(synthetic_root, ["nope"])


def test_srt_text():
    assert srt_text([(0.5, 1.25, "hi")]) == "1\n00:00:00,500 --> 00:00:01,250\nhi\n\n"
