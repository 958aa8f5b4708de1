"""videoccam/synthetic/example_data.py: the example media are written, and the checked-in train.jsonl is what the
generator writes (the validator's and fine-tuning's tests run on them: tests/tools/test_validate_data.py)."""

from __future__ import annotations

import json

from tests.conftest import ROOT
from videoccam.dataset.video_io import get_video_info, list_frame_files, load_image
from videoccam.synthetic.example_data import CLIPS, IMAGES, generate, media_path, records


def test_media_and_records(tmp_path):
    out = generate(tmp_path)
    written = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    assert written == records()
    assert (ROOT / "data/example/train.jsonl").read_text() == (out / "train.jsonl").read_text()
    for name, (container, frames, _) in CLIPS.items():
        path = out / media_path(name)
        if container == "mp4":
            assert get_video_info(path)[0] == frames
        elif container == "frames":
            assert len(list_frame_files(path)) == frames
        else:
            assert path.suffix == ".gif" and path.stat().st_size > 0
    for name in IMAGES:
        assert load_image(out / "images" / f"{name}.jpg").size == (64, 64)
    assert (out / "subtitles" / "clip_000.srt").read_text().startswith("1\n00:00:00,000 --> ")
