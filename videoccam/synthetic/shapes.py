"""The coloured-shapes dataset: a small synthetic video/image/text QA dataset for tests, the quickstart and tiny trainings.

Every video shows 2 to 4 coloured shapes (each a distinct colour out of red, green, blue, yellow; each a
square, circle or triangle) on a dark background, one after another: shape ``j`` of ``k`` is on screen
during frames ``[j * T // k, (j + 1) * T // k)`` and drifts a few pixels while it is. Answers therefore
depend on what is shown and in which order ("Which shape appears first?" -> "The red square."; "What color is
the last shape?" -> "Blue."), which is what the CCAM projector's causal mask is for. Images show one shape;
text-only samples are simple QA. Every other training video carries the four "content" questions of
:data:`CONTENT_TURNS` as one multi-turn record (four answers per decoded video, none giving another away);
every training video's record ends with a description of the whole video (after the questions, so that it gives
no answer away).

Output of :func:`generate` (``tools/make_synthetic_data.py --out DIR``)::

    DIR/videos/train_0000.mp4 ...  H.264 (libx264, yuv420p, GOP 8) mp4, 32 frames at 8 fps, 64x64, ~6 KB
    DIR/videos/val_0000.mp4 ...     held-out videos for val.json
    DIR/images/image_0000.jpg ...
    DIR/train.json      instruction data (design.md section 4): video, image and text-only records,
                        some multi-turn; a record of one question (and the closing description) carries
                        its type as ``task``
    DIR/val.json        one single-turn record per question type (``task``) for each held-out video; the
                        quickstart's grounding gate scores the colour / shape ones (:data:`CONTENT_CHANCE`)
    DIR/captions.json   caption-style single-turn records for stage-1 alignment (train videos + images)
    DIR/metadata.json   the ground truth of every video and image (shapes, colours, frames, centres)

:func:`generate_temporal` writes the temporal task of ``tools/ablate_temporal.py`` (colour order, direction of
motion; answers that depend on frame order, not on the set of frames). :func:`context_qa` makes the text-only
reading exercises the tiny LLMs are pretrained on.

The output is a pure function of the arguments (``seed``); with the defaults it takes a few seconds. The text
helpers (:func:`video_qa`, :func:`tokenizer_corpus`, ...) also feed the tiny models' tokenizer
(:mod:`videoccam.synthetic.tiny_models`), and the renderer (:func:`render_video`) the example data and the
data-loading benchmark.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from videoccam.model.hf.constants import IMAGE_TOKEN, VIDEO_TOKEN
from videoccam.synthetic.video_writer import resolve_encoder, write_mp4

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 190, 70),
    "blue": (40, 90, 230),
    "yellow": (235, 215, 40),
}
SHAPES: tuple[str, ...] = ("square", "circle", "triangle")
BACKGROUND: tuple[int, int, int] = (24, 24, 32)
NUMBER_WORDS: dict[int, str] = {
    0: "zero", 1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight",
}
VIDEO_FPS = 8
MIN_SHAPES, MAX_SHAPES = 2, 4

VIDEO_QUESTION_TYPES: tuple[str, ...] = (
    "first", "last", "count", "describe", "after", "first_color", "last_color", "first_shape",
)  # fmt: skip
VAL_QUESTION_TYPES: tuple[str, ...] = ("first", "last", "count", "describe", "first_color", "last_color", "first_shape")
CONTENT_CHANCE: dict[str, float] = {
    "first_color": 1 / len(COLORS), "last_color": 1 / len(COLORS), "first_shape": 1 / len(SHAPES),
}  # fmt: skip
"""Question types whose one-word answer is a colour or a shape, with the accuracy of guessing (the grounding
gate's content tasks)."""
SHAPE_RADIUS = 0.25
"""Half-size of a drawn shape as a fraction of the frame size. Large enough that a shape covers a good share of
the tiny SigLIP's 4 x 4 patches: with smaller shapes the colour signal in the features, averaged over a frame,
is a few percent of their spread, and the tiny model needs many more steps to find it."""
VIDEO_CAPTION_PROMPTS: tuple[str, ...] = (
    "Describe the video briefly.",
    "Give a short caption for the video.",
    "Summarize what happens in the video.",
)
IMAGE_CAPTION_PROMPTS: tuple[str, ...] = (
    "Describe the image briefly.",
    "Give a short caption for the image.",
)


@dataclass
class ShapeEvent:
    """One shape of a video: what it is and where/when it is drawn."""

    color: str
    shape: str
    start_frame: int
    end_frame: int  # exclusive
    start_center: tuple[float, float]  # (x, y) in pixels at start_frame
    end_center: tuple[float, float]  # (x, y) at end_frame - 1
    radius: float

    @property
    def name(self) -> str:
        return f"{self.color} {self.shape}"

    def center_at(self, frame: int) -> tuple[float, float]:
        """Centre (x, y) of the shape in ``frame`` (only meaningful inside its frame range)."""
        span = max(1, self.end_frame - 1 - self.start_frame)
        t = min(1.0, max(0.0, (frame - self.start_frame) / span))
        (x0, y0), (x1, y1) = self.start_center, self.end_center
        return (x0 + t * (x1 - x0), y0 + t * (y1 - y0))


@dataclass
class VideoScene:
    """Ground truth of one synthetic video."""

    id: str
    video: str  # relative path
    num_frames: int
    fps: int
    size: int
    events: list[ShapeEvent] = field(default_factory=list)


@dataclass
class GeneratedData:
    """What :func:`generate` wrote."""

    root: Path
    train_json: Path
    val_json: Path
    captions_json: Path
    metadata_json: Path
    num_train: int
    num_val: int
    num_captions: int
    skipped: bool = False


# --------------------------------------------------------------------------------------------------
# Text: questions and answers (shared with the tiny models' tokenizer corpus, videoccam/synthetic/tiny_models.py)
# --------------------------------------------------------------------------------------------------


def _capitalize(text: str) -> str:
    return text[:1].upper() + text[1:]


def describe_sequence(names: Sequence[str]) -> str:
    """Caption listing shapes in order: ``"A red square appears, then a green circle."``."""
    return f"A {names[0]} appears" + "".join(f", then a {name}" for name in names[1:]) + "."


def video_qa(names: Sequence[str], question_type: str, rng: random.Random | None = None) -> tuple[str, str]:
    """Question and answer of one type for a video showing ``names`` (``"red square"``, ...) in order.

    Args:
        names: Shape names in order of appearance.
        question_type: One of ``VIDEO_QUESTION_TYPES``.
        rng: Picks the reference shape of ``"after"`` questions (the first one when None).

    Returns:
        ``(question, answer)``.

    Raises:
        ValueError: On an unknown question type.
    """
    if question_type == "first":
        return "Which shape appears first?", f"The {names[0]}."
    if question_type == "last":
        return "What appears last?", f"The {names[-1]}."
    if question_type == "count":
        return "How many shapes appear?", f"{_capitalize(NUMBER_WORDS[len(names)])} shapes appear."
    if question_type == "describe":
        return "Describe the video.", describe_sequence(names)
    if question_type == "after":
        i = rng.randrange(len(names) - 1) if rng is not None else 0
        return f"What appears after the {names[i]}?", f"The {names[i + 1]}."
    if question_type == "first_color":
        return "What color is the first shape?", f"{_capitalize(names[0].split()[0])}."
    if question_type == "last_color":
        return "What color is the last shape?", f"{_capitalize(names[-1].split()[0])}."
    if question_type == "first_shape":
        return "What shape comes first?", f"{_capitalize(names[0].split()[1])}."
    raise ValueError(f"unknown video question type {question_type!r}; expected one of {VIDEO_QUESTION_TYPES}")


def image_qa(color: str, shape: str, kind: str) -> tuple[str, str]:
    """Question and answer about a one-shape image; ``kind`` is ``"shape"`` or ``"color"``."""
    if kind == "shape":
        return "What shape is in the image?", f"A {color} {shape}."
    if kind == "color":
        return "What color is the shape?", f"{_capitalize(color)}."
    raise ValueError(f"unknown image question kind {kind!r}; expected 'shape' or 'color'")


TEMPORAL_TASKS: tuple[str, ...] = ("order", "direction")
DIRECTIONS: dict[str, tuple[str, str]] = {  # direction -> (where it starts, where it ends)
    "left": ("right", "left"), "right": ("left", "right"), "up": ("bottom", "top"), "down": ("top", "bottom"),
}  # fmt: skip
MOVING_RADIUS = 0.15
"""Half-size of the moving shape of ``direction`` scenes (smaller than :data:`SHAPE_RADIUS`, so it travels
further across the frame)."""


def order_qa(colors: Sequence[str], which: str) -> tuple[str, str]:
    """``"Which color appears first?"`` -> ``"Red."`` (``which`` is ``"first"`` or ``"last"``)."""
    if which not in ("first", "last"):
        raise ValueError(f"which must be 'first' or 'last', got {which!r}")
    return f"Which color appears {which}?", f"{_capitalize(colors[0] if which == 'first' else colors[-1])}."


def direction_qa(shape: str, direction: str) -> tuple[str, str]:
    """``"Which way does the square move?"`` -> ``"Left."``."""
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown direction {direction!r}; expected one of {sorted(DIRECTIONS)}")
    return f"Which way does the {shape} move?", f"{_capitalize(direction)}."


def describe_motion(color: str, shape: str, direction: str) -> str:
    """``"A red square moves from the right to the left."``."""
    start, end = DIRECTIONS[direction]
    return f"A {color} {shape} moves from the {start} to the {end}."


def image_caption(color: str, shape: str) -> str:
    return f"A {color} {shape} on a dark background."


def text_qa_pool() -> list[tuple[str, str]]:
    """All text-only question/answer pairs the generator draws from."""
    sides = {"square": 4, "triangle": 3}
    pool = [(f"How many sides does a {s} have?", f"{_capitalize(NUMBER_WORDS[n])}.") for s, n in sides.items()]
    pool += [
        ("Does a circle have corners?", "No, a circle has no corners."),
        ("What color do you get by mixing blue and yellow?", "Green."),
        ("Which colors can the shapes have?", "Red, green, blue and yellow."),
        ("Which shapes can appear in the videos?", "A square, a circle and a triangle."),
    ]
    pool += [
        (f"What is {NUMBER_WORDS[a]} plus {NUMBER_WORDS[b]}?", f"{_capitalize(NUMBER_WORDS[a + b])}.")
        for a in range(1, 5)
        for b in range(1, 5)
    ]
    return pool


def tokenizer_corpus() -> list[str]:
    """Every sentence form the generator can write, for training the tiny models' tokenizer.

    Covers every question, answer, caption and prompt template with every colour, shape and count, so each
    word of the generated data (see :data:`WORDS`) is in the tokenizer's training text.
    """
    names = [f"{color} {shape}" for color in COLORS for shape in SHAPES]
    lines: list[str] = []
    for question_type in VIDEO_QUESTION_TYPES:
        for first in names:
            for second in names:
                if first.split()[0] == second.split()[0]:
                    continue
                lines.extend(video_qa([first, second], question_type))
    for count in range(MIN_SHAPES, MAX_SHAPES + 1):
        lines.extend(video_qa(names[:count], "count"))
        lines.append(describe_sequence(names[::3][:count]))
    for color in COLORS:
        for shape in SHAPES:
            for kind in ("shape", "color"):
                lines.extend(image_qa(color, shape, kind))
            lines.append(image_caption(color, shape))
    for question, answer in text_qa_pool():
        lines.extend([question, answer])
    lines.extend(VIDEO_CAPTION_PROMPTS + IMAGE_CAPTION_PROMPTS)
    colors = list(COLORS)
    for which in ("first", "last"):
        lines.extend(order_qa(colors, which))
    for shape in SHAPES:
        for direction in DIRECTIONS:
            lines.extend(direction_qa(shape, direction))
            lines.append(describe_motion(colors[0], shape, direction))
    return lines


WORDS: tuple[str, ...] = tuple(sorted({word for line in tokenizer_corpus() for word in re.findall(r"[A-Za-z]+", line)}))
"""Every word the generator can write (letters only, case kept)."""
CONTENT_VOCABULARIES: dict[str, frozenset[str]] = {
    "color": frozenset(COLORS),
    "shape": frozenset(SHAPES),
    "number": frozenset(NUMBER_WORDS.values()),
    "direction": frozenset(DIRECTIONS) | {side for sides in DIRECTIONS.values() for side in sides},
}
"""The words that carry the generated answers, by vocabulary: a reply is right when it names the answer's words
of each vocabulary the answer uses, in order (``videoccam.evaluation.grounding.ContentWords``)."""


# --------------------------------------------------------------------------------------------------
# Pixels
# --------------------------------------------------------------------------------------------------


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, center: tuple[float, float], radius: float, rgb) -> None:
    """Draw a filled square, circle or triangle of half-size ``radius`` centred at ``center``."""
    x, y = center
    r = radius
    if shape == "square":
        draw.rectangle([x - r, y - r, x + r, y + r], fill=rgb)
    elif shape == "circle":
        draw.ellipse([x - r, y - r, x + r, y + r], fill=rgb)
    elif shape == "triangle":
        draw.polygon([(x, y - r), (x - r, y + r), (x + r, y + r)], fill=rgb)
    else:
        raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")


def render_video(scene: VideoScene) -> np.ndarray:
    """Frames of a scene as uint8 RGB, shape [T, size, size, 3]."""
    frames = np.empty((scene.num_frames, scene.size, scene.size, 3), dtype=np.uint8)
    for t in range(scene.num_frames):
        image = Image.new("RGB", (scene.size, scene.size), BACKGROUND)
        draw = ImageDraw.Draw(image)
        for event in scene.events:
            if event.start_frame <= t < event.end_frame:
                draw_shape(draw, event.shape, event.center_at(t), event.radius, COLORS[event.color])
        frames[t] = np.asarray(image)
    return frames


def _random_scene(rng: random.Random, scene_id: str, num_frames: int, size: int) -> VideoScene:
    count = rng.randint(MIN_SHAPES, min(MAX_SHAPES, num_frames))
    colors = rng.sample(list(COLORS), count)
    radius = round(size * SHAPE_RADIUS)
    margin = radius + 2
    drift = size / 8
    events = []
    for j, color in enumerate(colors):
        x0, y0 = rng.uniform(margin + drift, size - margin - drift), rng.uniform(margin + drift, size - margin - drift)
        x1, y1 = x0 + rng.uniform(-drift, drift), y0 + rng.uniform(-drift, drift)
        events.append(
            ShapeEvent(
                color=color,
                shape=rng.choice(SHAPES),
                start_frame=j * num_frames // count,
                end_frame=(j + 1) * num_frames // count,
                start_center=(round(x0, 2), round(y0, 2)),
                end_center=(round(x1, 2), round(y1, 2)),
                radius=radius,
            )
        )
    return VideoScene(
        id=scene_id, video=f"videos/{scene_id}.mp4", num_frames=num_frames, fps=VIDEO_FPS, size=size, events=events
    )


# --------------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------------


def _conversation(pairs: Sequence[tuple[str, str]], media_token: str | None) -> list[dict[str, str]]:
    turns = []
    for i, (question, answer) in enumerate(pairs):
        if i == 0 and media_token is not None:
            question = f"{media_token}\n{question}"
        turns += [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]
    return turns


def _record(
    record_id: str,
    pairs: Sequence[tuple[str, str]],
    video: str | None = None,
    image: str | None = None,
    task: str | None = None,
) -> dict:
    """A design.md section 4 record; the media placeholder opens the first human turn; ``task`` names the
    question type of a single-question record (evaluation reports accuracy per task)."""
    record: dict = {"id": record_id}
    if task is not None:
        record["task"] = task
    if video is not None:
        record["video"] = video
    if image is not None:
        record["image"] = image
    token = VIDEO_TOKEN if video is not None else IMAGE_TOKEN if image is not None else None
    record["conversations"] = _conversation(pairs, token)
    return record


CONTENT_TURNS: tuple[str, ...] = ("first_color", "first_shape", "last_color", "count")
"""The questions of the multi-turn video records: none of their answers gives another away (unlike "The red
square." before "What color is the first shape?"), so every turn has to be read off the video."""


def _video_record(rng: random.Random, index: int, scene: VideoScene) -> dict:
    names = [event.name for event in scene.events]
    if index % 2 == 0:  # every other video: all of CONTENT_TURNS, in random order (4 answers per decoded video)
        types = rng.sample(CONTENT_TURNS, len(CONTENT_TURNS))
    else:  # otherwise cycle through the question types so each is equally common
        types = [VIDEO_QUESTION_TYPES[index // 2 % len(VIDEO_QUESTION_TYPES)]]
    pairs = [video_qa(names, question_type, rng) for question_type in types]
    if "describe" not in types:
        # a closing description of the whole video, after the questions so that it gives no answer away: it
        # keeps every shape, in order, in what the model must read off the frames (tools/ablate_temporal.py
        # measured order questions at 0.40 accuracy without such a turn and 0.97 with it)
        pairs.append((VIDEO_CAPTION_PROMPTS[index % len(VIDEO_CAPTION_PROMPTS)], describe_sequence(names)))
    return _record(scene.id, pairs, video=scene.video, task=types[0] if len(types) == 1 else None)


@dataclass
class _Written:
    """What :func:`generate` collects before writing the json files."""

    train: list[dict] = field(default_factory=list)
    captions: list[dict] = field(default_factory=list)
    val: list[dict] = field(default_factory=list)
    metadata: dict[str, list] = field(default_factory=lambda: {"videos": [], "images": []})


def _check_counts(counts: dict[str, int], frames: int, size: int) -> None:
    for name, value in counts.items():
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    if frames < MAX_SHAPES:
        raise ValueError(f"frames must be >= {MAX_SHAPES} (one segment per shape), got {frames}")
    if size < 16 or size % 2:
        raise ValueError(f"size must be even and >= 16 (H.264 yuv420p), got {size}")


def _add_videos(out: _Written, root: Path, rng: random.Random, split: str, count: int, frames: int, size: int,
                encoder: str) -> None:  # fmt: skip
    """Render and encode ``count`` videos of ``split``; train videos get a QA and a caption record, val videos one
    record per question type."""
    for i in range(count):
        scene = _random_scene(rng, f"{split}_{i:04d}", frames, size)
        write_mp4(render_video(scene), root / scene.video, scene.fps, encoder)
        out.metadata["videos"].append({"split": split, **asdict(scene)})
        names = [event.name for event in scene.events]
        if split == "train":
            out.train.append(_video_record(rng, i, scene))
            prompt = VIDEO_CAPTION_PROMPTS[i % len(VIDEO_CAPTION_PROMPTS)]
            out.captions.append(_record(f"caption_{scene.id}", [(prompt, describe_sequence(names))], video=scene.video))
        else:
            for question_type in VAL_QUESTION_TYPES:
                pair = video_qa(names, question_type)
                out.val.append(_record(f"{scene.id}_{question_type}", [pair], video=scene.video, task=question_type))


def _add_images(out: _Written, root: Path, rng: random.Random, num_images: int, size: int) -> None:
    """Draw ``num_images`` one-shape images, each with a QA and a caption record."""
    radius = round(size * SHAPE_RADIUS)
    for i in range(num_images):
        color, shape = rng.choice(list(COLORS)), rng.choice(SHAPES)
        center = (rng.uniform(radius + 2, size - radius - 2), rng.uniform(radius + 2, size - radius - 2))
        image = Image.new("RGB", (size, size), BACKGROUND)
        draw_shape(ImageDraw.Draw(image), shape, center, radius, COLORS[color])
        relative = f"images/image_{i:04d}.jpg"
        image.save(root / relative, quality=95)
        out.metadata["images"].append({"id": f"image_{i:04d}", "image": relative, "color": color, "shape": shape,
                                       "center": [round(c, 2) for c in center], "radius": radius})  # fmt: skip
        pair = image_qa(color, shape, "shape" if i % 2 == 0 else "color")
        out.train.append(_record(f"image_{i:04d}", [pair], image=relative))
        prompt = IMAGE_CAPTION_PROMPTS[i % len(IMAGE_CAPTION_PROMPTS)]
        out.captions.append(_record(f"caption_image_{i:04d}", [(prompt, image_caption(color, shape))], image=relative))


def generate(
    out_dir: str | Path,
    num_videos: int = 400,
    num_images: int = 100,
    num_text: int = 24,
    num_val_videos: int = 80,
    frames: int = 32,
    size: int = 64,
    seed: int = 0,
    force: bool = False,
    encoder: str = "auto",
) -> GeneratedData:
    """Write the synthetic dataset to ``out_dir`` (see the module docstring for the layout).

    Args:
        out_dir: Output folder (created).
        num_videos: Training videos (one train.json record each, every third one multi-turn).
        num_images: Training images (one record each).
        num_text: Text-only training records.
        num_val_videos: Held-out videos for val.json.
        frames: Frames per video (at least ``MAX_SHAPES``).
        size: Width and height in pixels (even, at least 16).
        seed: Everything written is a function of the arguments.
        force: Rewrite an existing dataset; without it an existing ``train.json`` is left alone.
        encoder: Video encoder, see :func:`videoccam.synthetic.video_writer.write_mp4`.

    Returns:
        Paths and record counts of what was written (``skipped=True`` if it already existed).

    Raises:
        ValueError: On invalid counts or sizes.
    """
    _check_counts(dict(num_videos=num_videos, num_images=num_images, num_text=num_text,
                       num_val_videos=num_val_videos), frames, size)  # fmt: skip
    encoder = resolve_encoder(encoder)

    root = Path(out_dir)
    paths = {name: root / f"{name}.json" for name in ("train", "val", "captions", "metadata")}
    if paths["train"].exists() and not force:
        counts = {name: len(json.loads(paths[name].read_text())) for name in ("train", "val", "captions")}
        return GeneratedData(root, paths["train"], paths["val"], paths["captions"], paths["metadata"],
                             counts["train"], counts["val"], counts["captions"], skipped=True)  # fmt: skip
    for sub in ("videos", "images"):
        shutil.rmtree(root / sub, ignore_errors=True)
        (root / sub).mkdir(parents=True)

    rng = random.Random(seed)
    out = _Written()
    _add_videos(out, root, rng, "train", num_videos, frames, size, encoder)
    _add_videos(out, root, rng, "val", num_val_videos, frames, size, encoder)
    _add_images(out, root, rng, num_images, size)
    pool = text_qa_pool()
    for i in range(num_text):
        pairs = rng.sample(pool, 2 if i % 4 == 3 else 1)  # every fourth text record is two-turn
        out.train.append(_record(f"text_{i:04d}", pairs))

    rng.shuffle(out.train)
    # train.json last: its presence marks a complete dataset (see the skip check above).
    for name, records in (("val", out.val), ("captions", out.captions), ("metadata", out.metadata),
                          ("train", out.train)):  # fmt: skip
        paths[name].write_text(json.dumps(records, indent=1) + "\n")
    return GeneratedData(root, paths["train"], paths["val"], paths["captions"], paths["metadata"],
                         len(out.train), len(out.val), len(out.captions))  # fmt: skip


# --------------------------------------------------------------------------------------------------
# Temporal task: questions whose answer depends on frame order, not on the set of frames
# --------------------------------------------------------------------------------------------------

def _order_scene(rng: random.Random, scene_id: str, num_frames: int, size: int) -> VideoScene:
    """2 or 3 shapes of different colours, one after another, each standing still."""
    count = rng.choice((2, 3))
    radius = round(size * SHAPE_RADIUS)
    low, high = radius + 2, size - radius - 2
    events = []
    for j, color in enumerate(rng.sample(list(COLORS), count)):
        center = (round(rng.uniform(low, high), 2), round(rng.uniform(low, high), 2))
        events.append(ShapeEvent(color, rng.choice(SHAPES), j * num_frames // count, (j + 1) * num_frames // count,
                                 center, center, radius))  # fmt: skip
    return VideoScene(scene_id, f"videos/{scene_id}.mp4", num_frames, VIDEO_FPS, size, events)


def _direction_scene(rng: random.Random, scene_id: str, num_frames: int, size: int, direction: str) -> VideoScene:
    """One shape crossing the frame in ``direction`` during the whole video.

    Start and end points of the four directions mirror each other, so a video and its time reversal show the
    same set of frames: only frame order tells "left" from "right".
    """
    radius = round(size * MOVING_RADIUS)
    low, high = radius + 2, size - radius - 2
    across = round(rng.uniform(low + radius, high - radius), 2)  # the fixed coordinate
    start, end = {"right": ((low, across), (high, across)), "left": ((high, across), (low, across)),
                  "down": ((across, low), (across, high)), "up": ((across, high), (across, low))}[direction]  # fmt: skip
    event = ShapeEvent(rng.choice(list(COLORS)), rng.choice(SHAPES), 0, num_frames, start, end, radius)
    return VideoScene(scene_id, f"videos/{scene_id}.mp4", num_frames, VIDEO_FPS, size, [event])


def temporal_record(rng: random.Random, scene: VideoScene, task: str, describe_prompt: str | None = None) -> dict:
    """The record of a temporal scene (``task`` is ``"order"`` or ``"direction"``).

    Without ``describe_prompt`` (test records): one question. With it (training records): an ``order`` video is
    asked both "first" and "last" (in random order, so the question word, not the video alone, decides the
    answer), then every video is asked for a description of the whole video ("A red square, then a blue
    circle."; "A red square moves from the left to the right."). The description comes after the questions, so it
    never gives an answer away; it teaches the projector to carry every shape, in order.
    """
    if task == "order":
        colors = [event.color for event in scene.events]
        which = rng.choice(("first", "last"))
        pairs = [order_qa(colors, which)]
        if describe_prompt is not None:
            other = order_qa(colors, "last" if which == "first" else "first")
            pairs = [*pairs, other] if rng.random() < 0.5 else [other, *pairs]
        description = describe_sequence([event.name for event in scene.events])
    else:
        event = scene.events[0]
        (x0, y0), (x1, y1) = event.start_center, event.end_center
        direction = ("right" if x1 > x0 else "left") if x1 != x0 else ("down" if y1 > y0 else "up")
        pairs = [direction_qa(event.shape, direction)]
        description = describe_motion(event.color, event.shape, direction)
    if describe_prompt is not None:
        pairs.append((describe_prompt, description))
    return _record(scene.id, pairs, video=scene.video, task=task)


@dataclass
class TemporalData:
    """What :func:`generate_temporal` wrote."""

    root: Path
    train_json: Path
    test_json: Path
    metadata_json: Path
    num_train: int
    num_test: int
    skipped: bool = False


def generate_temporal(
    out_dir: str | Path,
    num_train: int = 1000,
    num_test: int = 200,
    frames: int = 64,
    size: int = 64,
    seed: int = 0,
    force: bool = False,
    encoder: str = "auto",
) -> TemporalData:
    """Write a temporal-reasoning dataset: half ``order`` videos, half ``direction`` videos.

    * ``order``: 2 or 3 coloured shapes appear one after another; "Which color appears first?" / "... last?"
      -> ``"Red."``. Reversing the video swaps the answers but keeps the set of frames.
    * ``direction``: one shape crosses the frame; "Which way does the circle move?" -> ``"Left."`` (or right,
      up, down). Start and end points mirror each other, so again only frame order tells the answer.

    A projector that ignores frame order (no CCAM mask, no temporal position embedding) can therefore do no
    better than guessing among the colours shown (order) or between the two directions of the visible axis.
    Training records ask an order video both questions and end with a description of the whole video
    (:func:`temporal_record`); test records hold one question. Every record has a ``task`` field. Layout: ``train.json``, ``test.json``, ``metadata.json``, ``videos/``.

    Args:
        out_dir: Output folder.
        num_train, num_test: Videos (= records) per split; tasks alternate.
        frames: Frames per video (>= 4; evaluation at more frames than this samples every frame).
        size: Frame width and height (even, >= 16).
        seed: Everything written is a function of the arguments.
        force: Rewrite an existing dataset (``train.json`` present) instead of keeping it.
        encoder: Video encoder, see :func:`videoccam.synthetic.video_writer.write_mp4`.

    Raises:
        ValueError: On invalid counts or sizes.
    """
    for name, value in (("num_train", num_train), ("num_test", num_test)):
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    if frames < MAX_SHAPES:
        raise ValueError(f"frames must be >= {MAX_SHAPES}, got {frames}")
    if size < 16 or size % 2:
        raise ValueError(f"size must be even and >= 16 (H.264 yuv420p), got {size}")
    encoder = resolve_encoder(encoder)
    root = Path(out_dir)
    paths = {name: root / f"{name}.json" for name in ("train", "test", "metadata")}
    if paths["train"].exists() and not force:
        counts = {name: len(json.loads(paths[name].read_text())) for name in ("train", "test")}
        return TemporalData(root, paths["train"], paths["test"], paths["metadata"], counts["train"], counts["test"],
                            skipped=True)  # fmt: skip
    shutil.rmtree(root / "videos", ignore_errors=True)
    (root / "videos").mkdir(parents=True)
    rng = random.Random(seed)
    splits: dict[str, list[dict]] = {"train": [], "test": []}
    metadata: list[dict] = []
    for split, count in (("train", num_train), ("test", num_test)):
        for i in range(count):
            task, scene_id = TEMPORAL_TASKS[i % len(TEMPORAL_TASKS)], f"{split}_{i:04d}"
            if task == "order":
                scene = _order_scene(rng, scene_id, frames, size)
            else:
                scene = _direction_scene(rng, scene_id, frames, size, rng.choice(list(DIRECTIONS)))
            write_mp4(render_video(scene), root / scene.video, scene.fps, encoder)
            metadata.append({"split": split, "task": task, **asdict(scene)})
            # training videos also ask for a description (second turn); test records ask the question only
            prompt = VIDEO_CAPTION_PROMPTS[i % len(VIDEO_CAPTION_PROMPTS)] if split == "train" else None
            splits[split].append(temporal_record(rng, scene, task, prompt))
    for name, records in (("test", splits["test"]), ("metadata", metadata), ("train", splits["train"])):
        paths[name].write_text(json.dumps(records, indent=1) + "\n")
    return TemporalData(root, paths["train"], paths["test"], paths["metadata"], num_train, num_test)


# --------------------------------------------------------------------------------------------------
# Text-only reading exercises for the tiny LLMs (tools/make_tiny_models.py)
# --------------------------------------------------------------------------------------------------


def context_qa(rng: random.Random) -> tuple[str, str, str]:
    """A ``(description, question, answer)`` triple whose answer can only be read from the description.

    The tiny LLMs are pretrained on these (the description where the visual tokens will be), so that, like a
    real pretrained LLM, they can answer from what their context says; the projector then has something to
    write into. Covers every question form of the synthetic data (shape sequences, images, order, motion).
    """
    kind = rng.random()
    if kind < 0.5:
        count = rng.randint(MIN_SHAPES, MAX_SHAPES)
        names = [f"{color} {rng.choice(SHAPES)}" for color in rng.sample(list(COLORS), count)]
        if rng.random() < 0.3:
            question = rng.choice(VIDEO_CAPTION_PROMPTS)
            return describe_sequence(names), question, describe_sequence(names)
        return (describe_sequence(names), *video_qa(names, rng.choice(VIDEO_QUESTION_TYPES), rng))
    if kind < 0.7:
        color, shape = rng.choice(list(COLORS)), rng.choice(SHAPES)
        if rng.random() < 0.3:
            return image_caption(color, shape), rng.choice(IMAGE_CAPTION_PROMPTS), image_caption(color, shape)
        return (image_caption(color, shape), *image_qa(color, shape, rng.choice(["shape", "color"])))
    if kind < 0.85:
        colors = rng.sample(list(COLORS), rng.choice((2, 3)))
        names = [f"{color} {rng.choice(SHAPES)}" for color in colors]
        return (describe_sequence(names), *order_qa(colors, rng.choice(("first", "last"))))
    color, shape, direction = rng.choice(list(COLORS)), rng.choice(SHAPES), rng.choice(list(DIRECTIONS))
    return (describe_motion(color, shape, direction), *direction_qa(shape, direction))
