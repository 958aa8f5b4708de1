"""Tiny synthetic copies of the benchmarks' on-disk layouts, so every evaluator runs offline in seconds.

The videos are 64x64 H.264 clips (a coloured background per video with a white square moving across), written
with :func:`videoccam.synthetic.video_writer.write_mp4`; frame folders are JPEG files. Questions are about colours and
shapes, with seeded random answers: the layouts exercise the readers, the frame rules and the metrics, not a
model's skill.

* MVBench: all 20 tasks of the official table (``questions_per_task`` each), video files under the official
  prefixes, TVQA-style frame folders (``00001.jpg`` at 3 fps) for Episodic Reasoning, start/end bounds for the
  bounded tasks.
* Video-MME: a parquet with short, medium and long videos (3 questions each) and .srt subtitles for all but one.
* MLVU: the 7 multiple-choice tasks with uneven sizes (so M-Avg and the micro average differ) and the 2
  generation tasks.
* VideoVista: ``VideoVista.json`` with understanding and reasoning types, videos in ``merged/<category>/<group>/``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from videoccam.evaluation.mlvu import MLVU_GEN_TASKS, MLVU_MC_TASKS
from videoccam.evaluation.mvbench import MVBENCH_TASKS
from videoccam.synthetic.video_writer import write_mp4

SIZE = 64
COLOURS = ["red", "green", "blue", "yellow", "purple", "orange"]
SHAPES = ["square", "circle", "triangle", "star"]
_RGB = {"red": (200, 30, 30), "green": (30, 170, 60), "blue": (40, 60, 200), "yellow": (220, 200, 40),
        "purple": (130, 40, 160), "orange": (230, 120, 20)}


def _frames(num_frames: int, seed: int) -> np.ndarray:
    """``[num_frames, 64, 64, 3]`` uint8: background colour from the seed, a white square moving right."""
    rng = np.random.default_rng(seed)
    bg = rng.integers(20, 236, size=3, dtype=np.uint8)
    out = np.empty((num_frames, SIZE, SIZE, 3), dtype=np.uint8)
    out[:] = bg
    for i in range(num_frames):
        x = int(i * (SIZE - 16) / max(1, num_frames - 1))
        out[i, 24:40, x:x + 16] = 255
        out[i, 60:, : 1 + i * SIZE // num_frames] = 0  # a progress bar: frame order is visible
    return out


def write_video(path: str | Path, num_frames: int = 48, fps: float = 8.0, seed: int = 0) -> Path:
    """Write a small H.264 mp4 with ``num_frames`` frames at ``fps`` (:func:`~.video_writer.write_mp4`).

    Raises:
        RuntimeError: If ffmpeg fails.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_mp4(_frames(num_frames, seed), path, fps)
    return path


def write_frame_folder(folder: str | Path, num_frames: int = 24, seed: int = 0) -> Path:
    """Write ``00001.jpg`` ... (numbered from 1, like MVBench's TVQA frames)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(_frames(num_frames, seed), start=1):
        Image.fromarray(frame).save(folder / f"{i:05d}.jpg", quality=90)
    return folder


def _mc(rng: random.Random, num_options: int) -> tuple[str, list[str], int]:
    colour = rng.choice(COLOURS)
    options = rng.sample([f"The {c} {s}." for c in COLOURS for s in SHAPES], num_options)
    answer = rng.randrange(num_options)
    return f"Which object is closest to the {colour} background?", options, answer


# ----------------------------------------------------------------------------------------------------------------
# MVBench
# ----------------------------------------------------------------------------------------------------------------


def make_mvbench(root: str | Path, questions_per_task: int = 2, tasks: Sequence[str] | None = None,
                 seed: int = 0) -> Path:
    """Write a synthetic MVBench layout (``json/<task>.json`` + ``video/<prefix>/...``).

    Each video prefix holds two media (``vid0.mp4``/``vid1.mp4``, or frame folders ``clip0``/``clip1``); the
    questions of a task alternate between them, so videos are shared across questions and tasks.

    Args:
        root: Output folder.
        questions_per_task: Questions per task.
        tasks: Task names (default: all 20).
        seed: Random seed.

    Returns:
        ``root``.
    """
    root = Path(root)
    rng = random.Random(seed)
    written: set[Path] = set()
    for t, (task, spec) in enumerate(MVBENCH_TASKS.items()):
        if tasks and task not in tasks:
            continue
        records = []
        for q in range(questions_per_task):
            name = f"clip{q % 2}" if spec.data_type == "frame" else f"vid{q % 2}.mp4"
            media = root / "video" / spec.prefix / name
            if media not in written:
                media_seed = len(written) + 1000 * seed
                if spec.data_type == "frame":
                    write_frame_folder(media, num_frames=24, seed=media_seed)
                else:
                    write_video(media, num_frames=48, fps=8.0, seed=media_seed)
                written.add(media)
            question, options, answer = _mc(rng, 4 if (t + q) % 3 else 3)
            rec = {"video": name, "question": question, "candidates": options, "answer": options[answer]}
            if spec.has_bound:
                rec.update(start=round(rng.uniform(0.0, 1.5), 1), end=round(rng.uniform(4.0, 5.5), 1))
            records.append(rec)
        path = root / "json" / spec.json_file
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(records, indent=1), encoding="utf-8")
    return root


# ----------------------------------------------------------------------------------------------------------------
# Video-MME
# ----------------------------------------------------------------------------------------------------------------

VIDEOMME_VIDEOS = [  # (videoID, duration, domain, sub_category, has subtitles)
    ("synShortA01", "short", "Knowledge", "Humanity & History", True),
    ("synShortB02", "short", "Sports Competition", "Football", True),
    ("synMedium03", "medium", "Life Record", "Travel", True),
    ("synLongVid04", "long", "Film & Television", "Animation", False),
]
VIDEOMME_TASK_TYPES = ["Counting Problem", "Object Recognition", "Temporal Reasoning", "Action Recognition"]


def srt_text(lines: Sequence[tuple[float, float, str]]) -> str:
    """Format ``(start_sec, end_sec, text)`` events as SubRip."""

    def ts(t: float) -> str:
        ms = int(round(t * 1000))
        return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"

    return "".join(f"{i}\n{ts(a)} --> {ts(b)}\n{text}\n\n" for i, (a, b, text) in enumerate(lines, start=1))


def make_videomme(root: str | Path, seed: int = 0) -> Path:
    """Write a synthetic Video-MME layout (parquet + ``video/*.mp4`` + ``subtitle/*.srt``).

    Returns:
        ``root``.
    """
    import pandas as pd

    root = Path(root)
    rng = random.Random(seed)
    rows = []
    for v, (vid, duration, domain, sub_cat, has_subs) in enumerate(VIDEOMME_VIDEOS):
        write_video(root / "video" / f"{vid}.mp4", num_frames=32 + 8 * v, fps=8.0, seed=200 + v)
        if has_subs:
            events = [(0.5 * k + 0.1, 0.5 * k + 0.5, f"{vid} line {k}: the {COLOURS[k % 6]} one moves.")
                      for k in range(8)]
            (root / "subtitle").mkdir(parents=True, exist_ok=True)
            (root / "subtitle" / f"{vid}.srt").write_text(srt_text(events), encoding="utf-8")
        for q in range(3):
            question, options, answer = _mc(rng, 4)
            rows.append({
                "video_id": f"{v + 1:03d}",
                "duration": duration,
                "domain": domain,
                "sub_category": sub_cat,
                "url": f"https://example.invalid/{vid}",
                "videoID": vid,
                "question_id": f"{v + 1:03d}-{q + 1}",
                "task_type": VIDEOMME_TASK_TYPES[(v + q) % len(VIDEOMME_TASK_TYPES)],
                "question": question,
                "options": [f"{'ABCD'[i]}. {o}" for i, o in enumerate(options)],
                "answer": "ABCD"[answer],
            })
    (root / "videomme").mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(root / "videomme" / "test-00000-of-00001.parquet", index=False)
    return root


# ----------------------------------------------------------------------------------------------------------------
# MLVU
# ----------------------------------------------------------------------------------------------------------------

# Uneven task sizes, so that M-Avg (mean over tasks) and the micro average differ.
MLVU_SYNTHETIC_SIZES = {"plotQA": 3, "needle": 2, "ego": 1, "count": 2, "order": 1, "anomaly_reco": 1,
                        "topic_reasoning": 2, "sub_scene": 1, "summary": 1}


def make_mlvu(root: str | Path, sizes: dict[str, int] | None = None, seed: int = 0) -> Path:
    """Write a synthetic MLVU layout (``json/<n>_<task>.json`` + ``video/<n>_<task>/*.mp4``).

    Args:
        root: Output folder.
        sizes: Questions per task (default :data:`MLVU_SYNTHETIC_SIZES`); two questions share each video.
        seed: Random seed.

    Returns:
        ``root``.
    """
    root = Path(root)
    rng = random.Random(seed)
    sizes = sizes or MLVU_SYNTHETIC_SIZES
    for t, (task, json_file) in enumerate({**MLVU_MC_TASKS, **MLVU_GEN_TASKS}.items()):
        n = sizes.get(task, 0)
        if not n:
            continue
        stem = Path(json_file).stem
        records = []
        for q in range(n):
            name = f"{task}_{q // 2}.mp4"
            path = root / "video" / stem / name
            if not path.exists():
                write_video(path, num_frames=40, fps=8.0, seed=300 + 10 * t + q)
            if task in MLVU_GEN_TASKS:
                rec = {"video": name, "duration": 5.0, "question": "Describe what happens in the video.",
                       "answer": "A white square moves from left to right.", "question_type": task}
                if task == "sub_scene":
                    rec["scoring_points"] = ["a white square", "moves to the right"]
            else:
                question, options, answer = _mc(rng, 4)
                rec = {"video": name, "duration": 5.0, "question": question, "candidates": options,
                       "answer": options[answer], "question_type": task}
            records.append(rec)
        (root / "json").mkdir(parents=True, exist_ok=True)
        (root / "json" / json_file).write_text(json.dumps(records, indent=1), encoding="utf-8")
    return root


# ----------------------------------------------------------------------------------------------------------------
# VideoVista
# ----------------------------------------------------------------------------------------------------------------

VIDEOVISTA_SYNTHETIC = [  # (video_name, category, Type)
    ("howto_clip.short.mp4", "Howto & Style", "Objects Existence"),
    ("howto_clip.short.mp4", "Howto & Style", "Action Count"),
    ("howto_clip.short.mp4", "Howto & Style", "Causal Reasoning"),
    ("sport_clip.medium.mp4", "Sports", "Event Sequence"),
    ("sport_clip.medium.mp4", "Sports", "Objects Existence"),
    ("sport_clip.medium.mp4", "Sports", "Event Prediction"),
    ("news_clip.long.mp4", "News & Politics", "Logic Reasoning"),
]


def make_videovista(root: str | Path, seed: int = 0) -> Path:
    """Write a synthetic VideoVista layout (``VideoVista.json`` + ``merged/<category>/<group>/<video>``).

    Returns:
        ``root``.
    """
    root = Path(root)
    rng = random.Random(seed)
    records = []
    for i, (name, category, qtype) in enumerate(VIDEOVISTA_SYNTHETIC):
        path = root / "merged" / category / name.split(".")[1] / name
        if not path.exists():
            write_video(path, num_frames=40, fps=8.0, seed=400 + i)
        question, options, answer = _mc(rng, 4)
        records.append({"video_name": name, "category": category, "Question": question,
                        "Answer_Choices": options, "Answer": answer, "Type": qtype})
    root.mkdir(parents=True, exist_ok=True)
    (root / "VideoVista.json").write_text(json.dumps(records, indent=1), encoding="utf-8")
    return root


MAKERS = {"mvbench": make_mvbench, "videomme": make_videomme, "mlvu": make_mlvu, "videovista": make_videovista}


def make_all(out: str | Path, benches: Sequence[str] | None = None, seed: int = 0) -> dict[str, Path]:
    """Write the synthetic layouts of ``benches`` (default all) under ``out/<bench>/``.

    Raises:
        ValueError: On an unknown benchmark name.
    """
    benches = list(benches or MAKERS)
    unknown = [b for b in benches if b not in MAKERS]
    if unknown:
        raise ValueError(f"unknown benchmark(s) {unknown}; expected some of {list(MAKERS)}")
    return {b: MAKERS[b](Path(out) / b, seed=seed) for b in benches}
