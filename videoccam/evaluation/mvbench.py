"""MVBench (Li et al., 2024): 20 temporal-understanding tasks, 200 multiple-choice questions each.

Official layout (the Hugging Face ``OpenGVLab/MVBench`` release)::

    ROOT/json/<task>.json            [{"video": "...", "question": "...", "candidates": [...], "answer": "...",
                                       "start": s, "end": e (tasks with bounds only)}, ...]
    ROOT/video/<prefix>/<video>      video files, or frame folders (<video>/00001.jpg, ...) at 3 fps

Protocol (VideoChat2's ``mvbench.ipynb`` as adapted by the upstream Video-CCAM ``eval/mvbench.py``):

* frames: :func:`videochat2_frame_indices`, VideoChat2's ``get_index`` (segment midpoints inside the optional
  ``[start, end]`` bound); frame folders are read by name ``{index:05d}.jpg`` from 1, at 3 fps; GIFs at 25 fps;
* prompt: ``<video>\\nQuestion: {question}\\nOptions:\\n(A) ...\\n(B) ...\\nAnswer with the option's letter from the
  given choices directly.``;
* metrics: per-task accuracy and ``Avg`` = all correct / all questions (as upstream; with the official 200
  questions per task it equals the mean over tasks, which is also reported as ``task_mean``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from videoccam.dataset import video_io
from videoccam.evaluation.benchmark import Benchmark
from videoccam.evaluation.metrics import macro_average, micro_average, tallies_to_dict, tally_by
from videoccam.evaluation.prompts import mc_question_block, option_letter
from videoccam.evaluation.samples import LoadedMedia, MediaRef, Sample
from videoccam.evaluation.scoring import score_samples


@dataclass(frozen=True)
class MVBenchTask:
    """One row of VideoChat2's MVBench task table."""

    json_file: str
    prefix: str
    data_type: str  # "video" | "frame" | "gif"
    has_bound: bool


# Task table of VideoChat2 (Ask-Anything video_chat2/mvbench.ipynb), as used by the upstream Video-CCAM
# eval/mvbench.py: task name -> (json file, video prefix under video/, data type, has start/end bound).
MVBENCH_TASKS: dict[str, MVBenchTask] = {
    "Action Sequence": MVBenchTask("action_sequence.json", "star/Charades_v1_480/", "video", True),
    "Action Prediction": MVBenchTask("action_prediction.json", "star/Charades_v1_480/", "video", True),
    "Action Antonym": MVBenchTask("action_antonym.json", "ssv2_video/", "video", False),
    "Fine-grained Action": MVBenchTask("fine_grained_action.json", "Moments_in_Time_Raw/videos/", "video", False),
    "Unexpected Action": MVBenchTask("unexpected_action.json", "FunQA_test/test/", "video", False),
    "Object Existence": MVBenchTask("object_existence.json", "clevrer/video_validation/", "video", False),
    "Object Interaction": MVBenchTask("object_interaction.json", "star/Charades_v1_480/", "video", True),
    "Object Shuffle": MVBenchTask("object_shuffle.json", "perception/videos/", "video", False),
    "Moving Direction": MVBenchTask("moving_direction.json", "clevrer/video_validation/", "video", False),
    "Action Localization": MVBenchTask("action_localization.json", "sta/sta_video/", "video", True),
    "Scene Transition": MVBenchTask("scene_transition.json", "scene_qa/video/", "video", False),
    "Action Count": MVBenchTask("action_count.json", "perception/videos/", "video", False),
    "Moving Count": MVBenchTask("moving_count.json", "clevrer/video_validation/", "video", False),
    "Moving Attribute": MVBenchTask("moving_attribute.json", "clevrer/video_validation/", "video", False),
    "State Change": MVBenchTask("state_change.json", "perception/videos/", "video", False),
    "Fine-grained Pose": MVBenchTask("fine_grained_pose.json", "nturgbd/", "video", False),
    "Character Order": MVBenchTask("character_order.json", "perception/videos/", "video", False),
    "Egocentric Navigation": MVBenchTask("egocentric_navigation.json", "vlnqa/", "video", False),
    "Episodic Reasoning": MVBenchTask("episodic_reasoning.json", "tvqa/frames_fps3_hq/", "frame", True),
    "Counterfactual Inference": MVBenchTask(
        "counterfactual_inference.json", "clevrer/video_validation/", "video", False
    ),
}

FRAME_FOLDER_FPS = 3.0  # VideoChat2 read_frame(fps=3)
GIF_FPS = 25.0  # VideoChat2 read_gif(fps=25)


def videochat2_frame_indices(
    bound: tuple[float, float] | None,
    fps: float,
    max_frame: int,
    num_segments: int,
    first_idx: int = 0,
) -> list[int]:
    """VideoChat2's MVBench ``get_index``: the midpoints of ``num_segments`` segments of ``[start, end]``.

    Written exactly as upstream (Ask-Anything ``video_chat2/mvbench.ipynb``, ``MVBench_dataset.get_index``),
    including Python's ``round`` for the bound and NumPy's round-half-to-even for the offsets::

        start, end = bound or (-100000, 100000)
        start_idx = max(first_idx, round(start * fps)); end_idx = min(round(end * fps), max_frame)
        seg_size = (end_idx - start_idx) / num_segments
        index_i = int(start_idx + seg_size / 2 + np.round(seg_size * i))

    Args:
        bound: ``(start_sec, end_sec)`` or None for the whole video.
        fps: Frame rate (the video's average fps; 3 for frame folders).
        max_frame: Last usable index: ``len(video) - 1`` for videos, the number of files for frame folders
            (whose files are numbered from 1).
        num_segments: Number of frames to sample.
        first_idx: Smallest index (0 for videos, 1 for frame folders).

    Returns:
        ``num_segments`` frame indices (repeats possible when the window has fewer frames than segments).

    Raises:
        ValueError: If ``num_segments`` < 1 or the bound starts after the usable frames end.
    """
    if num_segments < 1:
        raise ValueError(f"num_segments must be >= 1, got {num_segments}")
    if bound:
        start, end = bound[0], bound[1]
    else:
        start, end = -100000, 100000
    start_idx = max(first_idx, round(start * fps))
    end_idx = min(round(end * fps), max_frame)
    if end_idx < start_idx:
        raise ValueError(
            f"bound {bound} at {fps:g} fps gives frames [{start_idx}, {end_idx}]: empty (last frame {max_frame})"
        )
    seg_size = float(end_idx - start_idx) / num_segments
    return [int(start_idx + (seg_size / 2) + np.round(seg_size * idx)) for idx in range(num_segments)]


class MVBench(Benchmark):
    """MVBench evaluator; see the module docstring for layout and protocol.

    Args:
        root: MVBench folder (holding ``json/`` and ``video/``).
        tasks: Task names to evaluate (default: all 20). A task whose json file is missing is an error when
            named explicitly, and skipped with a note in the results otherwise.
    """

    name: ClassVar[str] = "mvbench"
    limit_group: ClassVar[str | None] = "task"

    def __init__(self, root: str | Path, tasks: Sequence[str] | None = None) -> None:
        super().__init__(root, tasks)
        if self.tasks:
            unknown = [t for t in self.tasks if t not in MVBENCH_TASKS]
            if unknown:
                raise ValueError(f"unknown MVBench task(s) {unknown}; known: {list(MVBENCH_TASKS)}")

    def load_samples(self) -> list[Sample]:
        """Read ``json/<task>.json`` of every task.

        Raises:
            FileNotFoundError: If no task json exists, or an explicitly requested one is missing.
            ValueError: On a malformed record (named by file and index).
        """
        json_dir = self.root / "json"
        samples = []
        self.missing_tasks = []
        for task, spec in MVBENCH_TASKS.items():
            if self.tasks and task not in self.tasks:
                continue
            path = json_dir / spec.json_file
            if not path.exists():
                if self.tasks:
                    raise FileNotFoundError(f"MVBench task {task!r}: {path} not found")
                self.missing_tasks.append(task)
                continue
            records = json.loads(path.read_text(encoding="utf-8"))
            for i, rec in enumerate(records):
                samples.append(self._sample(task, spec, path, i, rec))
        if not samples:
            raise FileNotFoundError(f"no MVBench task json found under {json_dir}")
        return samples

    def _sample(self, task: str, spec: MVBenchTask, path: Path, i: int, rec: Any) -> Sample:
        try:
            candidates = [str(c) for c in rec["candidates"]]
            question, answer, video = str(rec["question"]), str(rec["answer"]), str(rec["video"])
            bound = (float(rec["start"]), float(rec["end"])) if spec.has_bound else None
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{path} record {i}: malformed MVBench record ({e!r}): {str(rec)[:200]}") from e
        if answer not in candidates:
            raise ValueError(f"{path} record {i}: answer {answer!r} is not one of the candidates {candidates}")
        media = MediaRef(path=str(self.root / "video" / spec.prefix / video), kind=spec.data_type, bound=bound)
        return Sample(
            uid=f"{Path(spec.json_file).stem}/{i}",
            media=media,
            question=mc_question_block(question, candidates),
            answer=option_letter(candidates.index(answer)),
            num_options=len(candidates),
            meta={"task": task},
        )

    def load_media(self, media: MediaRef, num_frames: int) -> LoadedMedia:
        """Decode frames with VideoChat2's rule (see :func:`videochat2_frame_indices`).

        Raises:
            video_io.MediaLoadError: If the video, folder or GIF cannot be read or the bound is empty.
        """
        path = Path(media.path)
        if media.kind == "frame":
            return self._load_frame_folder(path, media.bound, num_frames)

        def select(total: int, fps: float) -> list[int]:
            fps = GIF_FPS if media.kind == "gif" else fps
            try:
                return videochat2_frame_indices(media.bound, fps, total - 1, num_frames, first_idx=0)
            except ValueError as e:
                raise video_io.MediaLoadError(path, str(e)) from e

        if media.kind == "gif":
            # Small files: decode every frame through the public loader, then pick VideoChat2's indices.
            clip = video_io.load_video_clip(path, num_frames=10**9)
            indices = select(clip.total_frames, GIF_FPS)
            return LoadedMedia(frames=[clip.frames[i] for i in indices], indices=indices, fps=GIF_FPS)
        # VideoChat2's rule depends on the video's fps and length: let the reader call it once it knows them
        clip = video_io.decode_selected_frames(path, select)
        return LoadedMedia(frames=clip.frames, indices=clip.indices, fps=clip.fps)

    def _load_frame_folder(self, folder: Path, bound: tuple[float, float] | None, num_frames: int) -> LoadedMedia:
        files = video_io.list_frame_files(folder)
        # VideoChat2: max_frame = number of files, names f"{index:05d}.jpg" counted from 1.
        try:
            indices = videochat2_frame_indices(bound, FRAME_FOLDER_FPS, len(files), num_frames, first_idx=1)
        except ValueError as e:
            raise video_io.MediaLoadError(folder, str(e)) from e
        frames = []
        for idx in indices:
            named = folder / f"{idx:05d}.jpg"
            # Folders not named like TVQA's frames fall back to the idx-th file in natural order.
            frames.append(video_io.load_image(named if named.exists() else files[idx - 1]))
        return LoadedMedia(frames=frames, indices=indices, fps=FRAME_FOLDER_FPS)

    def compute_metrics(self, samples: Sequence[Sample], replies: dict[str, str]) -> dict[str, Any]:
        """Per-task accuracy, ``avg`` (micro, the official number), ``task_mean``, unparseable replies."""
        rows, unparseable, missing = score_samples(samples, replies)
        scored = [(s.meta["task"], r) for s, r in rows]
        task_order = [t for t in MVBENCH_TASKS if any(s.meta["task"] == t for s in samples)]
        per_task = tally_by(scored, order=task_order)
        overall = micro_average(per_task)
        return {
            "avg": overall.accuracy,
            "task_mean": macro_average(per_task),
            "overall": overall.to_dict(),
            "per_task": tallies_to_dict(per_task),
            "unparseable": unparseable,
            "missing": missing,
            "missing_tasks": list(self.missing_tasks),
        }

    def headline(self, metrics: dict[str, Any]) -> dict[str, float]:
        """``Avg`` as on the MVBench leaderboard."""
        return {"Avg": metrics["avg"]}

    def breakdown(self, metrics: dict[str, Any]) -> dict[str, float]:
        """Per-task accuracies."""
        return {k: v["accuracy"] for k, v in metrics["per_task"].items()}
