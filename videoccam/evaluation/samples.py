"""What an evaluator reads from a benchmark's layout: its questions (:class:`Sample`), where their video lives
(:class:`MediaRef`), and the frames decoded for one frame count (:class:`LoadedMedia`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["LoadedMedia", "MediaRef", "Sample"]


@dataclass(frozen=True)
class MediaRef:
    """Where a question's visual input lives and how to read it.

    Attributes:
        path: Video file, frame folder or GIF.
        kind: ``"video"`` (a video file), ``"frame"`` (a folder of numbered JPEG frames) or ``"gif"``.
        bound: Optional ``(start_sec, end_sec)`` window inside the video (MVBench tasks with start/end).
    """

    path: str
    kind: str = "video"
    bound: tuple[float, float] | None = None


@dataclass
class LoadedMedia:
    """Frames decoded for one (media, num_frames) pair, plus where they came from.

    Attributes:
        frames: RGB frames, in temporal order.
        indices: Frame index of each returned frame in the source.
        fps: Frame rate used to turn indices into times, or None if unknown.
    """

    frames: list[Any]
    indices: list[int]
    fps: float | None = None

    @property
    def times(self) -> list[float]:
        """Time in seconds of each frame (``index / fps``); empty if the fps is unknown."""
        if not self.fps:
            return []
        return [i / self.fps for i in self.indices]


@dataclass
class Sample:
    """One benchmark question.

    Attributes:
        uid: Unique id inside the benchmark (stable across runs: the prediction store is keyed by it).
        media: Visual input of the question.
        question: The question block shown to the model (without the ``<video>`` line and the instruction).
        answer: Correct option letter for multiple-choice questions; the reference text for generation ones.
        num_options: Number of options (0 for generation questions).
        meta: Grouping fields used by the metrics (task, duration, type, ...).
        generation: True for open-ended questions that are judged outside this package.
    """

    uid: str
    media: MediaRef
    question: str
    answer: str
    num_options: int = 0
    meta: dict[str, Any] = field(default_factory=dict)
    generation: bool = False
