"""The benchmark base class: what MVBench, Video-MME, MLVU and VideoVista each implement."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from videoccam.dataset import video_io
from videoccam.evaluation.prompts import build_mc_prompt
from videoccam.evaluation.samples import LoadedMedia, MediaRef, Sample
from videoccam.model.hf.constants import VIDEO_TOKEN

__all__ = ["DEFAULT_VARIANT", "Benchmark"]

DEFAULT_VARIANT = "default"


class Benchmark(ABC):
    """One benchmark: reads its official layout, loads frames, builds prompts and computes metrics.

    Subclasses set ``name`` (and ``variants`` / ``limit_group`` when needed) and implement ``load_samples``,
    ``compute_metrics`` and ``headline``; ``load_media`` (uniform sampling by default) and ``build_prompt`` (the
    multiple-choice protocol by default) can be overridden.

    Args:
        root: The benchmark's data folder.
        tasks: Optional subset of task names (for benchmarks with tasks); None keeps all.

    Raises:
        FileNotFoundError: If ``root`` does not exist.
    """

    name: ClassVar[str] = ""
    #: Prompt variants every question is asked in (Video-MME: without and with subtitles).
    variants: ClassVar[tuple[str, ...]] = (DEFAULT_VARIANT,)
    #: ``Sample.meta`` key that ``--limit`` applies per (e.g. "task": the first N questions of each task); None:
    #: the first N questions overall.
    limit_group: ClassVar[str | None] = None

    def __init__(self, root: str | Path, tasks: Sequence[str] | None = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.name} data folder {str(self.root)!r} does not exist")
        self.tasks = list(tasks) if tasks else None
        #: Tasks of the benchmark whose annotation file is absent (filled by ``load_samples``; reported).
        self.missing_tasks: list[str] = []
        self._samples: list[Sample] | None = None

    # -- to implement -----------------------------------------------------------------------------------------------

    @abstractmethod
    def load_samples(self) -> list[Sample]:
        """Read all questions from the layout under ``root`` (restricted to ``tasks`` when given)."""


    @abstractmethod
    def compute_metrics(self, samples: Sequence[Sample], replies: dict[str, str]) -> dict[str, Any]:
        """Metrics of one variant from ``uid -> reply`` (questions without a reply count as ``missing``)."""

    @abstractmethod
    def headline(self, metrics: dict[str, Any]) -> dict[str, float]:
        """The few numbers printed in the summary table (column name -> percent)."""

    # -- overridable defaults ---------------------------------------------------------------------------------------

    def load_media(self, media: MediaRef, num_frames: int) -> LoadedMedia:
        """Decode ``num_frames`` frames of ``media``; default: the upstream ``uniform`` rule over the whole video
        (segment midpoints, every frame of a shorter video), see ``video_io.sample_uniform_indices``.

        Raises:
            MediaLoadError: If the video cannot be read.
        """
        clip = video_io.load_video_clip(media.path, num_frames=num_frames, sampling="uniform", bound=media.bound)
        return LoadedMedia(frames=clip.frames, indices=clip.indices, fps=clip.fps)

    def build_prompt(self, sample: Sample, variant: str, media: LoadedMedia) -> str:
        """User text of a question: the multiple-choice protocol, or ``<video>\\n{question}`` for generation."""
        if sample.generation:
            return f"{VIDEO_TOKEN}\n{sample.question}"
        return build_mc_prompt(sample.question)

    def breakdown(self, metrics: dict[str, Any]) -> dict[str, float]:
        """Per-task (or per-type) accuracies for the detailed table; empty if the benchmark has none."""
        return {}

    def write_extra(self, out_dir: Path, num_frames: int, variant: str, samples: Sequence[Sample],
                    records: dict[str, dict[str, Any]]) -> dict[str, str]:
        """Write benchmark-specific files (e.g. generation predictions); returns name -> path written."""
        return {}

    # -- shared -----------------------------------------------------------------------------------------------------

    def samples(self) -> list[Sample]:
        """All questions (cached), with unique uids checked.

        Raises:
            ValueError: On a duplicate uid or an empty benchmark.
        """
        if self._samples is None:
            samples = self.load_samples()
            seen: set[str] = set()
            for s in samples:
                if s.uid in seen:
                    raise ValueError(f"{self.name}: duplicate question uid {s.uid!r} under {self.root}")
                seen.add(s.uid)
            if not samples:
                raise ValueError(f"{self.name}: no questions found under {self.root} (tasks={self.tasks})")
            self._samples = samples
        return self._samples

    def select(self, limit: int | None = None) -> list[Sample]:
        """The questions to evaluate: all, or the first ``limit`` (per ``limit_group`` when set)."""
        samples = self.samples()
        if limit is None:
            return samples
        if limit <= 0:
            raise ValueError(f"--limit must be positive, got {limit}")
        if self.limit_group is None:
            return samples[:limit]
        counts: dict[Any, int] = {}
        out = []
        for s in samples:
            g = s.meta.get(self.limit_group)
            if counts.get(g, 0) < limit:
                counts[g] = counts.get(g, 0) + 1
                out.append(s)
        return out
