"""The media of the example custom dataset (data/example/) that data/README.md walks through.

``tools/make_example_data.py`` writes them into data/example/{videos,frames,gifs,images,subtitles}/.
data/example/train.jsonl is checked in; the media it references are generated here (deterministically, a
second or two) so that no binary files live in git. The dataset shows every kind of record the format allows:
mp4 videos, a folder of frames, a GIF, images, a text-only record, multi-turn conversations, a system prompt, a
per-record ``num_frames`` and a subtitles file. The videos are the synthetic "coloured shapes appear one after
another" clips of :mod:`videoccam.synthetic.shapes`, so the answers in train.jsonl are true of the pixels.

train.jsonl is written when the output folder has none, or with ``--jsonl`` (it is the file that is checked in).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw

from videoccam.synthetic import shapes as synth
from videoccam.synthetic.video_writer import write_mp4

SIZE = 64  # the tiny SigLIP's input size
FPS = 8

# name -> (container, frames, [(colour, shape), ...] in order of appearance)
CLIPS: dict[str, tuple[str, int, list[tuple[str, str]]]] = {
    "clip_000": ("mp4", 32, [("red", "square"), ("green", "circle"), ("blue", "triangle")]),
    "clip_001": ("mp4", 32, [("yellow", "circle"), ("red", "triangle")]),
    "clip_002": ("mp4", 48, [("blue", "square"), ("yellow", "triangle"), ("green", "circle"), ("red", "circle")]),
    "clip_003": ("mp4", 32, [("green", "triangle"), ("blue", "circle")]),
    "clip_004": ("frames", 16, [("red", "circle"), ("yellow", "square")]),
    "clip_005": ("gif", 16, [("blue", "triangle"), ("green", "square")]),
}
IMAGES: dict[str, tuple[str, str]] = {"shape_000": ("yellow", "square"), "shape_001": ("green", "triangle")}
SUBTITLES = {
    "clip_000": [(0.0, 1.3, "First, a red square."), (1.3, 2.6, "Now a green circle."), (2.6, 4.0, "Last, a blue triangle.")]
}


def media_path(name: str) -> str:
    container = CLIPS[name][0]
    return {"mp4": f"videos/{name}.mp4", "frames": f"frames/{name}", "gif": f"gifs/{name}.gif"}[container]


def _names(name: str) -> list[str]:
    return [f"{color} {shape}" for color, shape in CLIPS[name][2]]


def _scene(name: str) -> synth.VideoScene:
    _, frames, shapes = CLIPS[name]
    radius = round(SIZE * 0.17)
    events = []
    for j, (color, shape) in enumerate(shapes):
        # shapes sit at different places and drift a little, as in the synthetic data
        x0, y0 = 18.0 + 9 * (j % 3), 20.0 + 8 * (j % 2)
        events.append(synth.ShapeEvent(color, shape, j * frames // len(shapes), (j + 1) * frames // len(shapes),
                                       (x0, y0), (x0 + 6, y0 + 4), radius))  # fmt: skip
    return synth.VideoScene(name, media_path(name), num_frames=frames, fps=FPS, size=SIZE, events=events)


def _turns(pairs: Sequence[tuple[str, str]], token: str | None, system: str | None = None) -> list[dict]:
    turns = [{"from": "system", "value": system}] if system else []
    for i, (question, answer) in enumerate(pairs):
        turns.append({"from": "human", "value": f"{token}\n{question}" if i == 0 and token else question})
        turns.append({"from": "gpt", "value": answer})
    return turns


def records() -> list[dict]:
    """The records of train.jsonl."""
    qa = synth.video_qa
    return [
        {"id": "ex_000", "video": media_path("clip_000"), "conversations": _turns([qa(_names("clip_000"), "first")], "<video>")},
        {"id": "ex_001", "video": media_path("clip_000"), "subtitles": "subtitles/clip_000.srt",
         "conversations": _turns([qa(_names("clip_000"), "last"), qa(_names("clip_000"), "count")], "<video>")},
        {"id": "ex_002", "video": media_path("clip_001"), "num_frames": 8,
         "conversations": _turns([qa(_names("clip_001"), "describe")], "<video>")},
        {"id": "ex_003", "video": media_path("clip_002"), "conversations": _turns([qa(_names("clip_002"), "count")], "<video>")},
        {"id": "ex_004", "video": media_path("clip_002"),
         "conversations": _turns([qa(_names("clip_002"), "after")], "<video>")},
        {"id": "ex_005", "video": media_path("clip_003"), "conversations": _turns([qa(_names("clip_003"), "first")], "<video>")},
        {"id": "ex_006", "video": media_path("clip_004"), "conversations": _turns([qa(_names("clip_004"), "first")], "<video>")},
        {"id": "ex_007", "video": media_path("clip_005"), "conversations": _turns([qa(_names("clip_005"), "last")], "<video>")},
        {"id": "ex_008", "image": "images/shape_000.jpg",
         "conversations": _turns([synth.image_qa(*IMAGES["shape_000"], "shape")], "<image>")},
        {"id": "ex_009", "image": "images/shape_001.jpg",
         "conversations": _turns([synth.image_qa(*IMAGES["shape_001"], "color")], "<image>")},
        {"id": "ex_010", "conversations": _turns([("Does a circle have corners?", "No, a circle has no corners.")], None)},
        {"id": "ex_011", "video": media_path("clip_003"),
         "conversations": _turns([qa(_names("clip_003"), "describe")], "<video>",
                                 system="Answer questions about the shapes in the video.")},
    ]  # fmt: skip


def _srt(events: Sequence[tuple[float, float, str]]) -> str:
    def stamp(t: float) -> str:
        ms = round(t * 1000)
        return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"

    return "".join(f"{i}\n{stamp(a)} --> {stamp(b)}\n{text}\n\n" for i, (a, b, text) in enumerate(events, 1))


def generate(out: str | Path, write_jsonl: bool = False) -> Path:
    """Write the media (and train.jsonl if missing or ``write_jsonl``) into ``out``; returns ``out``."""
    out = Path(out)
    for sub in ("videos", "frames", "gifs", "images", "subtitles"):
        shutil.rmtree(out / sub, ignore_errors=True)
        (out / sub).mkdir(parents=True)
    for name, (container, _, _) in CLIPS.items():
        frames = synth.render_video(_scene(name))  # [t, 64, 64, 3] uint8
        target = out / media_path(name)
        if container == "mp4":
            write_mp4(frames, target, FPS)
        elif container == "frames":
            target.mkdir()
            for t, frame in enumerate(frames):
                Image.fromarray(frame).save(target / f"{t + 1:05d}.jpg", quality=90)
        else:
            images = [Image.fromarray(frame) for frame in frames]
            images[0].save(target, save_all=True, append_images=images[1:], duration=1000 // FPS, loop=0)
    for name, (color, shape) in IMAGES.items():
        image = Image.new("RGB", (SIZE, SIZE), synth.BACKGROUND)
        synth.draw_shape(ImageDraw.Draw(image), shape, (SIZE / 2, SIZE / 2), round(SIZE * 0.2), synth.COLORS[color])
        image.save(out / "images" / f"{name}.jpg", quality=95)
    for name, events in SUBTITLES.items():
        (out / "subtitles" / f"{name}.srt").write_text(_srt(events), encoding="utf-8")
    if write_jsonl or not (out / "train.jsonl").exists():
        (out / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records()), encoding="utf-8")
    return out
