"""Video-MME (Fu et al., 2024): 900 videos (short / medium / long), 3 four-option questions each, with subtitles.

Official layout (the Hugging Face ``lmms-lab/Video-MME`` release)::

    ROOT/videomme/test-00000-of-00001.parquet   (or any *.parquet in ROOT/videomme/ or ROOT/)
        columns: video_id, duration (short|medium|long), domain, sub_category, url, videoID, question_id,
                 task_type, question, options (["A. ...", "B. ...", ...]), answer ("A".."D")
    ROOT/video/<videoID>.mp4
    ROOT/subtitle/<videoID>.srt                 (not every video has one)

Protocol (the upstream Video-CCAM ``eval/videomme.py``): frames with the ``uniform`` rule over the whole video;
two variants of every question, ``wo_sub`` and ``w_sub``::

    <video>
    [This video's subtitles are listed below:
    {subtitle lines}]                                 <- w_sub only
    Select the best answer to the following multiple-choice question based on the video. Respond with only the
    letter (A, B, C, or D) of the correct option.
    {question}
    A. ...
    ...
    Answer with the option's letter from the given choices directly.

Subtitle lines (:func:`select_subtitles`): for each sampled frame, at time ``index / fps``, the subtitle events
covering it (``start <= t < end``, the official Video-MME/lmms-eval rule), in frame order, each event once. Like
upstream, a ``w_sub`` question of a video without subtitles keeps the header with no lines under it.

Metrics: accuracy overall, per duration (short / medium / long), per task type, per domain, per sub-category.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Sequence

from videoccam.evaluation.benchmark import Benchmark
from videoccam.evaluation.metrics import micro_average, tallies_to_dict, tally_by
from videoccam.evaluation.prompts import MC_INSTRUCTION
from videoccam.evaluation.samples import LoadedMedia, MediaRef, Sample
from videoccam.evaluation.scoring import score_samples
from videoccam.model.hf.constants import VIDEO_TOKEN

DURATIONS = ("short", "medium", "long")
SUBTITLE_HEADER = "This video's subtitles are listed below:"
VIDEOMME_INSTRUCTION = (
    "Select the best answer to the following multiple-choice question based on the video. "
    "Respond with only the letter (A, B, C, or D) of the correct option."
)
VARIANT_NO_SUBS = "wo_sub"
VARIANT_SUBS = "w_sub"


# ----------------------------------------------------------------------------------------------------------------
# Subtitles
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SubtitleEvent:
    """One .srt event: ``[start, end)`` in seconds and its text (lines joined by spaces)."""

    start: float
    end: float
    text: str


_SRT_TIME = re.compile(
    r"(\d+):(\d{1,2}):(\d{1,2})[,.](\d{1,3})\s*-->\s*(\d+):(\d{1,2}):(\d{1,2})[,.](\d{1,3})"
)
_TAG = re.compile(r"<[^>]+>|\{\\[^}]*\}")


def _seconds(h: str, m: str, s: str, ms: str) -> float:
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms.ljust(3, "0")) / 1000.0


def parse_srt(text: str) -> list[SubtitleEvent]:
    """Parse SubRip text into events sorted by start time.

    Tolerates a BOM, CRLF line ends, missing counter lines, ``.`` instead of ``,`` before the milliseconds,
    formatting tags (``<i>``, ``{\\an8}``) and multi-line texts (joined with spaces). Events with no text are
    dropped.

    Args:
        text: Content of an .srt file.

    Returns:
        Events sorted by start time (stable for equal starts).
    """
    events = []
    lines = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n").split("\n")
    i = 0
    while i < len(lines):
        m = _SRT_TIME.search(lines[i])
        if not m:
            i += 1
            continue
        start, end = _seconds(*m.groups()[:4]), _seconds(*m.groups()[4:])
        i += 1
        body = []
        while i < len(lines) and lines[i].strip():
            if _SRT_TIME.search(lines[i]):
                break
            body.append(lines[i].strip())
            i += 1
        # A counter line right before the next timing line belongs to the next event.
        if body and i < len(lines) and _SRT_TIME.search(lines[i]) and body[-1].isdigit():
            body.pop()
        content = _TAG.sub("", " ".join(body)).strip()
        if content:
            events.append(SubtitleEvent(start, end, content))
    return sorted(events, key=lambda e: e.start)


def select_subtitles(events: Sequence[SubtitleEvent], frame_times: Sequence[float]) -> list[str]:
    """Subtitle lines for sampled frames: the events covering each frame time, in order, each event once.

    An event covers time ``t`` when ``start <= t < end``.

    Args:
        events: Parsed events (see :func:`parse_srt`).
        frame_times: Time in seconds of each sampled frame, in increasing order.

    Returns:
        Event texts in order of first appearance.
    """
    chosen: list[int] = []
    seen: set[int] = set()
    for t in frame_times:
        for k, ev in enumerate(events):
            if ev.start > t:
                break
            if ev.start <= t < ev.end and k not in seen:
                seen.add(k)
                chosen.append(k)
    return [events[k].text for k in chosen]


# ----------------------------------------------------------------------------------------------------------------
# Benchmark
# ----------------------------------------------------------------------------------------------------------------

_OPTION_PREFIX = re.compile(r"^\s*([A-Z])[.)]\s*")


class VideoMME(Benchmark):
    """Video-MME evaluator; see the module docstring for layout and protocol.

    Args:
        root: Video-MME folder.
        tasks: Unused (Video-MME has no task split); must be None.
    """

    name: ClassVar[str] = "videomme"
    variants: ClassVar[tuple[str, ...]] = (VARIANT_NO_SUBS, VARIANT_SUBS)

    def __init__(self, root: str | Path, tasks: Sequence[str] | None = None) -> None:
        if tasks:
            raise ValueError("Video-MME has no tasks to select; drop --tasks")
        super().__init__(root)
        self._subtitles: dict[str, list[SubtitleEvent]] = {}

    def parquet_files(self) -> list[Path]:
        """The question parquet file(s): ``videomme/*.parquet``, else ``*.parquet`` in the root.

        Raises:
            FileNotFoundError: If there is none.
        """
        for folder in (self.root / "videomme", self.root):
            files = sorted(folder.glob("*.parquet"))
            if files:
                return files
        raise FileNotFoundError(f"no Video-MME parquet in {self.root / 'videomme'} or {self.root}")

    def load_samples(self) -> list[Sample]:
        """Read the questions from the parquet file(s).

        Raises:
            ValueError: On missing columns or a malformed row (named by file and question id).
        """
        import pandas as pd

        files = self.parquet_files()
        df = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
        needed = ["duration", "domain", "sub_category", "task_type", "videoID", "question_id", "question",
                  "options", "answer"]
        missing = [c for c in needed if c not in df.columns]
        if missing:
            raise ValueError(f"{files[0]}: missing column(s) {missing}; found {list(df.columns)}")
        samples = []
        for row in df.to_dict("records"):
            qid = str(row["question_id"])
            options = [str(o) for o in list(row["options"])]
            letters = []
            for o in options:
                m = _OPTION_PREFIX.match(o)
                if not m:
                    raise ValueError(f"{files[0]} question {qid}: option {o!r} does not start with 'A.'-style letter")
                letters.append(m.group(1))
            answer = str(row["answer"]).strip()
            if answer not in letters:
                raise ValueError(f"{files[0]} question {qid}: answer {answer!r} not among option letters {letters}")
            duration = str(row["duration"])
            video_id = str(row["videoID"])
            samples.append(
                Sample(
                    uid=qid,
                    media=MediaRef(path=str(self.root / "video" / f"{video_id}.mp4")),
                    question="\n".join([str(row["question"])] + options),
                    answer=answer,
                    num_options=len(options),
                    meta={
                        "videoID": video_id,
                        "duration": duration,
                        "domain": str(row["domain"]),
                        "sub_category": str(row["sub_category"]),
                        "task_type": str(row["task_type"]),
                    },
                )
            )
        return samples

    def subtitle_events(self, video_id: str) -> list[SubtitleEvent]:
        """Parsed ``subtitle/<videoID>.srt`` (cached); empty when the video has no subtitle file."""
        if video_id not in self._subtitles:
            path = self.root / "subtitle" / f"{video_id}.srt"
            if path.exists():
                self._subtitles[video_id] = parse_srt(path.read_text(encoding="utf-8", errors="replace"))
            else:
                self._subtitles[video_id] = []
        return self._subtitles[video_id]

    def build_prompt(self, sample: Sample, variant: str, media: LoadedMedia) -> str:
        """The upstream Video-CCAM Video-MME prompt (with subtitles for ``w_sub``)."""
        parts = [VIDEO_TOKEN]
        if variant == VARIANT_SUBS:
            lines = select_subtitles(self.subtitle_events(sample.meta["videoID"]), media.times)
            parts += [SUBTITLE_HEADER, "\n".join(lines)]
        parts += [VIDEOMME_INSTRUCTION, sample.question, MC_INSTRUCTION]
        return "\n".join(parts)

    def compute_metrics(self, samples: Sequence[Sample], replies: dict[str, str]) -> dict[str, Any]:
        """Accuracy overall, per duration, task type, domain and sub-category; unparseable replies."""
        rows, unparseable, missing = score_samples(samples, replies)
        per_duration = tally_by(((s.meta["duration"], r) for s, r in rows), order=DURATIONS)
        return {
            "overall": micro_average(per_duration).to_dict(),
            "per_duration": tallies_to_dict(per_duration),
            "per_task_type": tallies_to_dict(tally_by((s.meta["task_type"], r) for s, r in rows)),
            "per_domain": tallies_to_dict(tally_by((s.meta["domain"], r) for s, r in rows)),
            "per_sub_category": tallies_to_dict(tally_by((s.meta["sub_category"], r) for s, r in rows)),
            "unparseable": unparseable,
            "missing": missing,
        }

    def headline(self, metrics: dict[str, Any]) -> dict[str, float]:
        """Overall and per-duration accuracy."""
        out = {"overall": metrics["overall"]["accuracy"]}
        out.update({d: metrics["per_duration"][d]["accuracy"] for d in DURATIONS})
        return out

    def breakdown(self, metrics: dict[str, Any]) -> dict[str, float]:
        """Per task type accuracies."""
        return {k: v["accuracy"] for k, v in metrics["per_task_type"].items()}
