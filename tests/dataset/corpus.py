"""A small custom-format corpus with good and deliberately broken records, built in a temp folder by the tests.

No binaries are checked in: the videos are rendered and encoded here (videoccam/synthetic/shapes.py's helpers).
``BAD`` maps each broken record's index to the category the validator and training must report for it, and a
word of its reason; ``GOOD`` lists the usable records. ``BUILD_TIME`` are the bad records the dataset finds while
it is built (no decoding), the others only show when their media are decoded.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from videoccam.synthetic import shapes as synth
from videoccam.synthetic.video_writer import write_mp4

LONG_QUESTION = "Which shape appears first? " * 100  # 600 tokens with the tiny tokenizer: > 512 - 32 + 1

# index -> (category, words its reason must contain)
BAD: dict[int, tuple[str, str]] = {
    3: ("media_empty", "empty (0 bytes)"),
    4: ("media_corrupt", "cannot decode video"),
    6: ("media_corrupt", "cannot decode video"),
    7: ("media_missing", "not found"),
    8: ("media_empty", "no image files"),
    9: ("placeholders", "has 2 <video> placeholders for 1 video"),
    10: ("no_answer", "no answer turn"),
    11: ("too_long", "remove the whole answer"),
}
GOOD = [0, 1, 2, 5, 12, 13]
BUILD_TIME = [3, 7, 8, 9, 10, 11]
NUM_RECORDS = 14


def _turns(question: str, answer: str | None, token: str | None = "<video>") -> list[dict]:
    turns = [{"from": "human", "value": f"{token}\n{question}" if token else question}]
    if answer is not None:
        turns.append({"from": "gpt", "value": answer})
    return turns


def build_corpus(root: Path, name: str = "corpus.jsonl") -> Path:
    """Write the media and the data file under ``root``; returns the data file."""
    (root / "videos").mkdir(parents=True, exist_ok=True)
    scene = synth.VideoScene(
        "good", "videos/good.mp4", num_frames=32, fps=8, size=64,
        events=[synth.ShapeEvent("red", "square", 0, 16, (20.0, 20.0), (24.0, 22.0), 11),
                synth.ShapeEvent("green", "circle", 16, 32, (40.0, 40.0), (42.0, 44.0), 11)],
    )  # fmt: skip
    frames = synth.render_video(scene)
    write_mp4(frames, root / "videos/good.mp4", scene.fps, encoder="pyav")
    data = (root / "videos/good.mp4").read_bytes()
    (root / "videos/zero.mp4").write_bytes(b"")
    (root / "videos/truncated.mp4").write_bytes(data[: len(data) // 2])
    (root / "videos/text.mp4").write_text("this is a text file, not a video\n" * 20)
    (root / "frames/good").mkdir(parents=True, exist_ok=True)
    for t in range(0, 32, 4):
        Image.fromarray(frames[t]).save(root / f"frames/good/{t:03d}.png")
    (root / "frames/empty").mkdir(parents=True, exist_ok=True)
    (root / "frames/empty/notes.txt").write_text("no frames here\n")
    (root / "images").mkdir(exist_ok=True)
    Image.fromarray(frames[0]).save(root / "images/good.jpg")
    gif = [Image.fromarray(frame) for frame in frames[::4]]
    gif[0].save(root / "videos/good.gif", save_all=True, append_images=gif[1:], duration=125, loop=0)

    records = [
        {"id": "good_video", "video": "videos/good.mp4", "conversations": _turns("Which shape appears first?", "The red square.")},
        {"id": "good_image", "image": "images/good.jpg", "conversations": _turns("What shape is in the image?", "A red square.", "<image>")},
        {"id": "good_text", "conversations": _turns("Does a circle have corners?", "No, a circle has no corners.", None)},
        {"id": "zero_bytes", "video": "videos/zero.mp4", "conversations": _turns("What appears last?", "The green circle.")},
        {"id": "truncated", "video": "videos/truncated.mp4", "conversations": _turns("What appears last?", "The green circle.")},
        {"id": "good_folder", "video": "frames/good", "conversations": _turns("What appears last?", "The green circle.")},
        {"id": "text_as_mp4", "video": "videos/text.mp4", "conversations": _turns("What appears last?", "The green circle.")},
        {"id": "missing", "video": "videos/does_not_exist.mp4", "conversations": _turns("What appears last?", "The green circle.")},
        {"id": "empty_folder", "video": "frames/empty", "conversations": _turns("What appears last?", "The green circle.")},
        {"id": "two_placeholders", "video": "videos/good.mp4",
         "conversations": _turns("<video>\nWhich shape appears first?", "The red square.")},
        {"id": "no_answer", "video": "videos/good.mp4", "conversations": _turns("What appears last?", None)},
        {"id": "too_long", "video": "videos/good.mp4", "conversations": _turns(LONG_QUESTION, "The red square.")},
        {"id": "good_gif", "video": "videos/good.gif", "conversations": _turns("Which shape appears first?", "The red square.")},
        {"id": "good_num_frames", "video": "videos/good.mp4", "num_frames": 4,
         "conversations": _turns("How many shapes appear?", "Two shapes appear.")},
    ]  # fmt: skip
    assert len(records) == NUM_RECORDS
    path = root / name
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def write_counter_video(path: Path, num_frames: int = 100, fps: int = 25) -> None:
    """A 64x64 video whose frame t shows t in binary (see :func:`read_counter`)."""
    frames = np.full((num_frames, 64, 64, 3), 128, dtype=np.uint8)
    for t in range(num_frames):
        for bit in range(7):
            frames[t, :32, bit * 8 : bit * 8 + 8] = 255 if (t >> bit) & 1 else 0
    write_mp4(frames, path, fps, encoder="pyav")


def read_counter(pixel_values) -> list[int]:
    """Frame numbers shown by ``[t, 3, 64, 64]`` frames of a counter video (bright block = 1): normalised float
    frames in [-1, 1] or the dataset's uint8 frames (``normalize_in_model``)."""
    values = np.asarray(pixel_values, dtype=np.float32)
    if np.asarray(pixel_values).dtype == np.uint8:
        values = values / 127.5 - 1.0
    values = values.mean(axis=1)  # [t, 64, 64], in [-1, 1]
    return [
        sum(1 << bit for bit in range(7) if frame[4:28, bit * 8 + 2 : bit * 8 + 6].mean() > 0) for frame in values
    ]
