"""Reading and checking records of the custom video QA format (design.md section 4).

A data file is a JSON list or JSON lines, one record per sample::

    {"id": "clip_0001", "video": "videos/clip_0001.mp4",          # or "image": "...", or neither
     "num_frames": 16,                                             # optional, overrides the dataset's
     "subtitles": "subs/clip_0001.srt",                            # optional
     "conversations": [{"from": "human", "value": "<video>\\nWhat happens first?"},
                       {"from": "gpt", "value": "A red square appears."}]}

Everything here is pure Python (no tokeniser, no decoding) so the validator and the dataset share it.

Every problem is a :class:`RecordError` with a ``category`` (one of :data:`CATEGORIES`), so the validator can
count problems by kind and ``skipped_samples.json`` can say what was wrong in a machine-readable way.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from videoccam.dataset.video_io import IMAGE_EXTENSIONS
from videoccam.model.hf.constants import IMAGE_TOKEN, MEDIA_TOKENS, VIDEO_TOKEN

_PLACEHOLDER = re.compile("|".join(re.escape(t) for t in MEDIA_TOKENS))
ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


CATEGORIES: dict[str, str] = {
    "json": "malformed JSON",
    "schema": "bad record schema",
    "no_answer": "no answer turn",
    "placeholders": "media placeholders do not match the media",
    "media_missing": "media file not found",
    "media_empty": "media empty (0-byte file, frame folder without images)",
    "media_corrupt": "media cannot be decoded",
    "too_many_frames": "more frames than visual tokens",
    "subtitles_missing": "subtitles file not found",
    "too_long": "too long: the answer or the placeholder would be cut away",
}
"""Problem categories of :class:`RecordError` and what each means."""


class RecordError(ValueError):
    """A record that cannot be used; the message names the file, the record and the problem.

    Attributes:
        source: The data file.
        index: 0-based position of the record in the file (JSON list) or among its non-empty lines (JSONL).
        record_id: The record's ``id`` field, if any.
        reason: What is wrong, in words.
        category: One of :data:`CATEGORIES`.
    """

    def __init__(
        self, source: str, index: int = -1, record_id: Any = None, reason: str = "", category: str = "schema"
    ) -> None:
        if category not in CATEGORIES:
            raise ValueError(f"unknown RecordError category {category!r}; expected one of {sorted(CATEGORIES)}")
        self.source, self.index, self.record_id, self.reason, self.category = (
            source, index, record_id, reason, category
        )  # fmt: skip
        if not reason:
            # A bare message: torch's DataLoader re-raises a worker's exception as ``type(e)(message)``.
            super().__init__(source)
            return
        ident = f" (id={record_id!r})" if record_id is not None else ""
        super().__init__(f"{source}: record {index}{ident}: {reason}")

    def __reduce__(self):  # picklable across DataLoader workers and process pools
        return (type(self), (self.source, self.index, self.record_id, self.reason, self.category))

    def as_dict(self) -> dict[str, Any]:
        """``{"index", "id", "source", "category", "reason"}``: one entry of a report or ``skipped_samples.json``."""
        return {
            "index": self.index,
            "id": self.record_id,
            "source": self.source,
            "category": self.category,
            "reason": self.reason,
        }


def load_records(path: str | Path, on_error: str = "raise") -> list[Any]:
    """Load a ``.json`` list or a ``.jsonl`` file.

    Args:
        path: The data file (``.jsonl`` is read as JSON lines, anything else as one JSON list).
        on_error: ``"raise"``: a malformed line stops loading. ``"skip"``: a malformed JSONL line becomes a
            :class:`RecordError` (category ``json``) in its place in the returned list, so the caller can
            report or skip it and the other records keep their indices. A malformed ``.json`` file always
            raises (nothing in it can be trusted).

    Returns:
        The records, in file order (blank JSONL lines are not records).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: malformed JSON (naming the file and line), or a .json file that is not a list.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e})") from e
    if path.suffix == ".jsonl":
        records: list[Any] = []
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                message = f"line {lineno} is not valid JSON: {e.msg} (column {e.colno})"
                if on_error == "raise":
                    raise ValueError(f"{path}: {message}") from e
                records.append(RecordError(str(path), len(records), None, message, "json"))
        return records
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON at line {e.lineno} column {e.colno}: {e.msg}") from e
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of records, got {type(data).__name__}")
    return data


@dataclass
class Sample:
    """A checked record: media path (resolved), kind and the turns as xtuner conversation dicts."""

    index: int
    record_id: Any
    kind: str  # "video" | "image" | "text"
    media_path: Path | None
    num_frames: int | None
    subtitles: Path | None
    conversation: list[dict[str, str]]  # xtuner format: [{"input", "output", "system"?}], <image> placeholder


KNOWN_KEYS = frozenset({"id", "video", "image", "conversations", "num_frames", "subtitles", "task"})
"""Fields this project reads (data/README.md; ``task`` only by evaluations). Other fields are ignored (LLaVA-style files often carry extra
metadata); the validator lists them as warnings so that a typo such as ``"vidoe"`` is noticed."""


def parse_record(record: Any, index: int, source: str, root: str | Path) -> Sample:
    """Check one record's schema and placeholder count, and convert it to xtuner's conversation format.

    ``<video>`` becomes xtuner's ``<image>`` placeholder (one id in ``input_ids`` for either kind of media).

    Raises:
        RecordError: naming the record and the problem.
    """
    rid = record.get("id") if isinstance(record, dict) else None

    def fail(reason: str, category: str = "schema") -> RecordError:
        return RecordError(source, index, rid, reason, category)

    if not isinstance(record, dict):
        raise fail(f"a record must be a JSON object, got {type(record).__name__}")
    if "video" in record and "image" in record:
        raise fail("has both 'video' and 'image'; one media item per record")
    kind, media = "text", None
    for key in ("video", "image"):
        if key in record:
            value = record[key]
            if not isinstance(value, str) or not value:
                raise fail(f"'{key}' must be a non-empty path string, got {value!r}")
            kind, media = key, Path(root) / value
    num_frames = record.get("num_frames")
    if num_frames is not None and (not isinstance(num_frames, int) or isinstance(num_frames, bool) or num_frames < 1):
        raise fail(f"'num_frames' must be a positive integer, got {num_frames!r}")
    subtitles = record.get("subtitles")
    if subtitles is not None and not isinstance(subtitles, str):
        raise fail(f"'subtitles' must be a path string, got {subtitles!r}")

    turns = record.get("conversations")
    if not isinstance(turns, list) or not turns:
        raise fail("'conversations' must be a non-empty list")
    system = ""
    conversation: list[dict[str, str]] = []
    pending: str | None = None
    placeholders = 0
    for t, turn in enumerate(turns):
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
            raise fail(f"turn {t} must be an object with a string 'value'")
        role = ROLES.get(turn.get("from"))
        if role is None:
            raise fail(f"turn {t} has unknown 'from' {turn.get('from')!r} (expected human/gpt/system)")
        value = turn["value"]
        count = len(_PLACEHOLDER.findall(value))
        if role == "system":
            if t != 0:
                raise fail(f"turn {t}: a system turn may only come first")
            system = value
        elif role == "user":
            if pending is not None:
                raise fail(f"turn {t}: two human turns in a row")
            placeholders += count
            if count > 1:
                raise fail(
                    f"turn {t} has {count} media placeholders but a record has at most one image or video",
                    "placeholders",
                )
            pending = _PLACEHOLDER.sub(IMAGE_TOKEN, value)
        else:
            if count:
                raise fail(f"turn {t}: a gpt answer contains a media placeholder", "placeholders")
            if pending is None:
                raise fail(f"turn {t}: a gpt turn must follow a human turn")
            item = {"input": pending, "output": value}
            if system and not conversation:
                item["system"] = system
            conversation.append(item)
            pending = None
    if not conversation:
        raise fail("no answer turn: a record needs at least one human turn followed by a gpt turn", "no_answer")
    if pending is not None:
        raise fail("the last human turn has no gpt answer", "no_answer")
    expected = 0 if kind == "text" else 1
    if placeholders != expected:
        media_desc = f"one {kind}" if expected else "no image or video"
        raise fail(
            f"{placeholders} {IMAGE_TOKEN}/{VIDEO_TOKEN} placeholders but the record has {media_desc}; "
            f"a record with media needs exactly one placeholder, a text-only record none",
            "placeholders",
        )
    return Sample(index, rid, kind, media, num_frames, Path(root) / subtitles if subtitles else None, conversation)


def check_media_path(sample: Sample, source: str) -> None:
    """Cheap existence checks of a sample's files (no decoding): what training can find out before step 1.

    Checks that the image or video exists, that a file is not empty, that a frame folder holds at least one
    image file (``IMAGE_EXTENSIONS``), and that the subtitles file, if named, exists.

    Raises:
        RecordError: ``media_missing``, ``media_empty`` or ``subtitles_missing``.
    """

    def fail(reason: str, category: str) -> RecordError:
        return RecordError(source, sample.index, sample.record_id, reason, category)

    path = sample.media_path
    if path is not None:
        if not path.exists():
            raise fail(f"{sample.kind} not found: {path}", "media_missing")
        if path.is_dir():
            if sample.kind == "image":
                raise fail(f"image is a directory, expected an image file: {path}", "media_empty")
            with os.scandir(path) as entries:
                has_frames = any(
                    entry.name.lower().endswith(IMAGE_EXTENSIONS) and not entry.name.startswith(".")
                    and entry.is_file()
                    for entry in entries
                )  # fmt: skip
            if not has_frames:
                raise fail(
                    f"frame folder has no image files ({', '.join(IMAGE_EXTENSIONS)}): {path}", "media_empty"
                )
        elif path.stat().st_size == 0:
            raise fail(f"{sample.kind} file is empty (0 bytes): {path}", "media_empty")
    if sample.subtitles is not None and not sample.subtitles.is_file():
        raise fail(f"subtitles file not found: {sample.subtitles}", "subtitles_missing")


def media_error_category(path: Path | None) -> str:
    """Category of a failure to load ``path``: ``media_missing``, ``media_empty`` or ``media_corrupt``."""
    if path is None or not path.exists():
        return "media_missing"
    if path.is_file() and path.stat().st_size == 0:
        return "media_empty"
    if path.is_dir() and not any(p.suffix.lower() in IMAGE_EXTENSIONS for p in path.iterdir()):
        return "media_empty"
    return "media_corrupt"


def check_num_frames(sample: Sample, num_queries: int, source: str) -> None:
    """A record's own ``num_frames`` must not exceed the visual token count (CCAM needs frames <= queries).

    Raises:
        RecordError: ``too_many_frames``.
    """
    if sample.kind == "video" and sample.num_frames is not None and sample.num_frames > num_queries:
        raise RecordError(
            source, sample.index, sample.record_id,
            f"num_frames={sample.num_frames} > num_queries={num_queries}: the CCAM projector needs at most one "
            "frame per visual token; lower the record's num_frames",
            "too_many_frames",
        )  # fmt: skip
