"""Shared pieces of the benchmark evaluators: samples, prompts, answer parsing, the prediction store, metrics.

Every multiple-choice benchmark here follows the protocol of design.md section 7 (taken from the upstream
Video-CCAM evaluation code): the user turn is ``<video>\\n{question}\\n{options}\\n{MC_INSTRUCTION}``, decoding is
greedy, and the reply's first token (after stripping prefixes such as "Answer:" or "The answer is") is matched
against the option letters. Replies that yield no option letter are *unparseable*: they are scored wrong, counted
and listed in the results, never silently dropped.

Notation: an option *letter* is "A", "B", ...; an option *text* is what follows it.
"""

from __future__ import annotations

import json
import math
import os
import re
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

VIDEO_PLACEHOLDER = "<video>"
MC_INSTRUCTION = "Answer with the option's letter from the given choices directly."
DEFAULT_VARIANT = "default"

OPTION_LETTERS = string.ascii_uppercase


# ----------------------------------------------------------------------------------------------------------------
# Samples and media
# ----------------------------------------------------------------------------------------------------------------


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


def option_letter(index: int) -> str:
    """Letter of the ``index``-th option (0 -> "A").

    Raises:
        ValueError: If there are more options than letters.
    """
    if not 0 <= index < len(OPTION_LETTERS):
        raise ValueError(f"option index {index} out of range: at most {len(OPTION_LETTERS)} options are supported")
    return OPTION_LETTERS[index]


def format_options(options: Sequence[str], style: str = "paren") -> str:
    """Format option texts one per line.

    Args:
        options: Option texts in order.
        style: ``"paren"`` gives ``(A) text`` (MVBench, MLVU, VideoVista); ``"dot"`` gives ``A. text`` (Video-MME).

    Returns:
        The options joined by newlines.

    Raises:
        ValueError: On an unknown style.
    """
    if style == "paren":
        return "\n".join(f"({option_letter(i)}) {text}" for i, text in enumerate(options))
    if style == "dot":
        return "\n".join(f"{option_letter(i)}. {text}" for i, text in enumerate(options))
    raise ValueError(f"unknown option style {style!r}; expected 'paren' or 'dot'")


def mc_question_block(question: str, options: Sequence[str]) -> str:
    """The upstream MVBench/MLVU question block: ``Question: q\\nOptions:\\n(A) ...``."""
    return f"Question: {question}\nOptions:\n{format_options(options)}"


def build_mc_prompt(question_block: str, preamble: str = "") -> str:
    """Build the user text of a multiple-choice question.

    Args:
        question_block: Question and options (already formatted).
        preamble: Text placed between the ``<video>`` line and the question (subtitles, benchmark instruction).

    Returns:
        ``<video>\\n[preamble\\n]{question_block}\\n{MC_INSTRUCTION}``.
    """
    parts = [VIDEO_PLACEHOLDER]
    if preamble:
        parts.append(preamble)
    parts += [question_block, MC_INSTRUCTION]
    return "\n".join(parts)


# ----------------------------------------------------------------------------------------------------------------
# Answer parsing
# ----------------------------------------------------------------------------------------------------------------

# Prefixes removed (case-insensitively, repeatedly) before the first token is read. Longest first.
ANSWER_PREFIXES = (
    "the best answer is",
    "the correct answer is",
    "the best option is",
    "the correct option is",
    "the answer is",
    "answer is",
    "best answer:",
    "best option:",
    "correct answer:",
    "answer:",
    "option:",
    "option",
)
# Characters stripped around the first token: brackets, punctuation, markdown emphasis, quotes.
_TOKEN_STRIP = "()[]{}<>.,:;!?*_'\"`"
_LOWER_LETTER_DELIMITED = re.compile(r"^([a-z])\s*[).:]")


def parse_option_letter(reply: str, num_options: int) -> str | None:
    """Read the chosen option letter from a model reply.

    Only the first line is read. Known answer prefixes ("Answer:", "The answer is", ...) are removed, then the first
    whitespace-separated token is stripped of brackets and punctuation and must be a single option letter.

    * ``"(B)"``, ``"B."``, ``"B"``, ``"B) text"``, ``"Answer: C"``, ``"The answer is D."``, ``"**A**"`` -> letter.
    * An upper-case letter is accepted even when followed by text (``"A man walks"`` -> "A", as upstream does).
    * A lower-case letter is accepted only when it stands alone or is directly followed by ``)``, ``.`` or ``:``
      (``"b) text"`` -> "B"), so that the article in ``"a man walks"`` is not read as option A.
    * A letter outside the first ``num_options`` letters is not an answer.

    Args:
        reply: Model reply.
        num_options: Number of options of the question.

    Returns:
        The upper-case option letter, or None when the reply is unparseable.
    """
    valid = OPTION_LETTERS[:num_options]
    text = reply.strip().split("\n", 1)[0].strip() if reply else ""
    changed = True
    while changed and text:
        changed = False
        lowered = text.lower().lstrip(_TOKEN_STRIP + " ")
        offset = len(text) - len(lowered)
        for prefix in ANSWER_PREFIXES:
            if lowered.startswith(prefix):
                rest = text[offset + len(prefix):]
                # "option" must be a whole word ("options" / "optional" are not prefixes).
                if prefix == "option" and rest[:1].isalpha():
                    continue
                text = rest.strip()
                changed = True
                break
    if not text:
        return None
    head = text.lstrip(_TOKEN_STRIP + " ")
    lower_match = _LOWER_LETTER_DELIMITED.match(head)
    token = head.split(maxsplit=1)[0].strip(_TOKEN_STRIP) if head.split() else ""
    if len(token) == 1 and token.isupper() and token in valid:
        return token
    if len(token) == 1 and token.islower():
        stands_alone = len(head.split()) == 1
        if (stands_alone or lower_match) and token.upper() in valid:
            return token.upper()
    return None


@dataclass
class ScoredAnswer:
    """Result of scoring one multiple-choice reply."""

    pred: str | None
    correct: bool

    @property
    def parsed(self) -> bool:
        """Whether an option letter was found in the reply."""
        return self.pred is not None


def score_reply(reply: str, answer: str, num_options: int) -> ScoredAnswer:
    """Score a reply against the correct option letter (unparseable replies are wrong)."""
    pred = parse_option_letter(reply, num_options)
    return ScoredAnswer(pred=pred, correct=pred is not None and pred == answer)


def score_samples(
    samples: Sequence["Sample"], replies: dict[str, str]
) -> tuple[list[tuple["Sample", ScoredAnswer]], list[dict[str, str]], list[str]]:
    """Score every sample that has a reply.

    Returns:
        ``(scored, unparseable, missing)``: (sample, score) pairs, ``{"uid", "reply"}`` of the replies with no
        option letter (scored wrong, listed so they are not lost), and the uids with no reply yet.
    """
    scored, unparseable, missing = [], [], []
    for s in samples:
        if s.uid not in replies:
            missing.append(s.uid)
            continue
        result = score_reply(replies[s.uid], s.answer, s.num_options)
        scored.append((s, result))
        if not result.parsed:
            unparseable.append({"uid": s.uid, "reply": replies[s.uid]})
    return scored, unparseable, missing


# ----------------------------------------------------------------------------------------------------------------
# Metrics helpers
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class Tally:
    """Correct / total / unparseable counts of a group of questions."""

    correct: int = 0
    total: int = 0
    unparseable: int = 0

    def add(self, scored: ScoredAnswer) -> None:
        """Count one scored answer."""
        self.total += 1
        self.correct += int(scored.correct)
        self.unparseable += int(not scored.parsed)

    @property
    def accuracy(self) -> float:
        """Accuracy in percent (NaN for an empty group)."""
        return 100.0 * self.correct / self.total if self.total else math.nan

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "accuracy": self.accuracy,
            "correct": self.correct,
            "total": self.total,
            "unparseable": self.unparseable,
        }


def tally_by(items: Iterable[tuple[str, ScoredAnswer]], order: Sequence[str] = ()) -> dict[str, Tally]:
    """Group scored answers by key.

    Args:
        items: ``(group key, scored answer)`` pairs.
        order: Keys listed first, in this order (present even when empty); other keys follow in first-seen order.

    Returns:
        Key -> tally.
    """
    tallies: dict[str, Tally] = {key: Tally() for key in order}
    for key, scored in items:
        tallies.setdefault(key, Tally()).add(scored)
    return tallies


def micro_average(tallies: Mapping[str, Tally]) -> Tally:
    """Pool all groups (accuracy = all correct / all questions)."""
    pooled = Tally()
    for t in tallies.values():
        pooled.correct += t.correct
        pooled.total += t.total
        pooled.unparseable += t.unparseable
    return pooled


def macro_average(tallies: Mapping[str, Tally]) -> float:
    """Mean of the per-group accuracies over non-empty groups, in percent (NaN if all are empty)."""
    accs = [t.accuracy for t in tallies.values() if t.total]
    return sum(accs) / len(accs) if accs else math.nan


def tallies_to_dict(tallies: Mapping[str, Tally]) -> dict[str, dict[str, Any]]:
    """JSON-ready form of a key -> tally mapping."""
    return {k: t.to_dict() for k, t in tallies.items()}


# ----------------------------------------------------------------------------------------------------------------
# Resumable prediction store
# ----------------------------------------------------------------------------------------------------------------


class PredictionStore:
    """Append-only JSON-lines file of model replies, keyed by ``(variant, uid)``.

    One store holds one frame count (the file name carries it; every record repeats it and loading checks it).
    Each record is written and flushed to disk (``fsync``) as soon as its reply exists, so killing the process
    loses at most the batch being generated. A partly written last line (the process died mid-write) is cut off
    when the store is reopened.

    Args:
        path: The ``.jsonl`` file (created with its parent folder if missing).
        num_frames: Frame count of this store's records.

    Raises:
        ValueError: If an existing record is malformed or belongs to another frame count.
    """

    def __init__(self, path: str | os.PathLike, num_frames: int) -> None:
        self.path = Path(path)
        self.num_frames = num_frames
        self.records: dict[tuple[str, str], dict[str, Any]] = {}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            # The process died while writing the last record: drop the partial line.
            data = data[: data.rfind(b"\n") + 1]
            with open(self.path, "r+b") as f:
                f.truncate(len(data))
        for lineno, line in enumerate(data.decode("utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                key = (rec["variant"], rec["uid"])
                nf = rec["num_frames"]
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise ValueError(f"{self.path}:{lineno}: malformed prediction record ({e}): {line[:200]!r}") from e
            if nf != self.num_frames:
                raise ValueError(
                    f"{self.path}:{lineno}: record for {nf} frames in the store of {self.num_frames} frames"
                )
            self.records[key] = rec

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self.records

    def __len__(self) -> int:
        return len(self.records)

    def get(self, variant: str, uid: str) -> dict[str, Any] | None:
        """The record of a question, or None."""
        return self.records.get((variant, uid))

    def add_many(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Append records (each needs ``variant``, ``uid``), flush and fsync."""
        if not records:
            return
        lines = []
        for rec in records:
            rec = {**rec, "num_frames": self.num_frames}
            self.records[(rec["variant"], rec["uid"])] = rec
            lines.append(json.dumps(rec, ensure_ascii=False) + "\n")
        with open(self.path, "a", encoding="utf-8") as f:
            f.write("".join(lines))
            f.flush()
            os.fsync(f.fileno())


# ----------------------------------------------------------------------------------------------------------------
# Output helpers
# ----------------------------------------------------------------------------------------------------------------


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON atomically (temporary file + rename), so a crash never leaves half a results file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(_finite(obj), f, indent=2, ensure_ascii=False)
        f.write("\n")
    os.replace(tmp, path)


def _finite(obj: Any) -> Any:
    """Replace NaN by None so the JSON is standard."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def format_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Plain-text table; floats are shown with two decimals, None/NaN as "-"."""

    def cell(v: Any) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "-"
        if isinstance(v, float):
            return f"{v:.2f}"
        return str(v)

    table = [[str(h) for h in header]] + [[cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = []
    for n, row in enumerate(table):
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
