"""Reading and checking records of the custom video QA format (design.md section 4, data/README.md).

A data file is a JSON list or JSON lines, one record per sample::

    {"id": "clip_0001", "video": "videos/clip_0001.mp4",          # or "image": "...", or neither
     "num_frames": 16,                                             # optional, overrides the dataset's
     "subtitles": "subs/clip_0001.srt",                            # optional
     "conversations": [{"from": "human", "value": "<video>\\nWhat happens first?"},
                       {"from": "gpt", "value": "A red square appears."}]}

Several images or videos in one record are listed under ``"media"``, one placeholder per item, in order, in any
human turn::

    {"media": [{"video": "a.mp4", "num_frames": 8}, {"image": "b.jpg"}],
     "conversations": [{"from": "human", "value": "<video>\\nWhat happens here?"},
                       {"from": "gpt", "value": "..."},
                       {"from": "human", "value": "And in this picture? <image>"}, {"from": "gpt", "value": "..."}]}

``"video"`` / ``"image"`` is the one-item form of ``"media"``. Everything here is pure Python (no tokeniser,
no decoding) so the validator, the index builder and the dataset share it.

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
MEDIA_KINDS = ("video", "image")


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

    @classmethod
    def from_dict(cls, entry: dict[str, Any]) -> RecordError:
        """The inverse of :meth:`as_dict`."""
        return cls(entry["source"], entry["index"], entry.get("id"), entry["reason"], entry["category"])


def json_error_reason(error: json.JSONDecodeError, lineno: int) -> str:
    """The reason of a malformed JSONL line (shared by :func:`load_records` and the index builder)."""
    return f"line {lineno} is not valid JSON: {error.msg} (column {error.colno})"


def load_records(path: str | Path, on_error: str = "raise") -> list[Any]:
    """Load a ``.json`` list or a ``.jsonl`` file into memory (the validator; training reads the index).

    Args:
        path: The data file (``.jsonl`` is read as JSON lines, anything else as one JSON list).
        on_error: ``"raise"``: a malformed line stops loading. ``"skip"``: a malformed JSONL line becomes a
            :class:`RecordError` (category ``json``) in its place in the returned list, so the caller can
            report or skip it and the other records keep their indices. A malformed ``.json`` file always
            raises (nothing in it can be trusted).

    Returns:
        The records, in file order (lines holding only whitespace are not records). Memory grows with the file.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: malformed JSON (naming the file and line), or a .json file that is not a list.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    if path.suffix == ".jsonl":
        records: list[Any] = []
        with open(path, "rb") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    text = line.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise ValueError(f"{path}: line {lineno} is not UTF-8 text ({e})") from e
                try:
                    records.append(json.loads(text))
                except json.JSONDecodeError as e:
                    message = json_error_reason(e, lineno)
                    if on_error == "raise":
                        raise ValueError(f"{path}: {message}") from e
                    records.append(RecordError(str(path), len(records), None, message, "json"))
        return records
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e})") from e
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON at line {e.lineno} column {e.colno}: {e.msg}") from e
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of records, got {type(data).__name__}")
    return data


@dataclass(frozen=True)
class MediaItem:
    """One image or video of a record: its kind, resolved path and own frame count (None: the dataset's)."""

    kind: str  # "video" | "image"
    path: Path
    num_frames: int | None = None


@dataclass
class Sample:
    """A checked record: its media in placeholder order and the turns as xtuner conversation dicts."""

    index: int
    record_id: Any
    media: tuple[MediaItem, ...]
    subtitles: Path | None
    conversation: list[dict[str, str]]  # xtuner format: [{"input", "output", "system"?}], <image> placeholders
    task: str | None = None

    @property
    def kind(self) -> str:
        """``text`` (no media), ``video`` or ``image`` (every item of that kind), or ``mixed``."""
        kinds = {item.kind for item in self.media}
        return "text" if not kinds else kinds.pop() if len(kinds) == 1 else "mixed"


KNOWN_KEYS = frozenset({"id", "video", "image", "media", "conversations", "num_frames", "subtitles", "task"})
"""Fields this project reads (data/README.md; ``task`` only by evaluations). Other fields are ignored (LLaVA-style
files often carry extra metadata); the validator lists them as warnings so that a typo such as ``"vidoe"`` is
noticed."""
MEDIA_ITEM_KEYS = frozenset({"video", "image", "num_frames"})


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _media_items(record: dict[str, Any], root: Path, fail: Any) -> tuple[MediaItem, ...]:
    """The record's media: its ``media`` list, or its ``video`` / ``image`` field as a one-item list."""
    num_frames = record.get("num_frames")
    if num_frames is not None and not _positive_int(num_frames):
        raise fail(f"'num_frames' must be a positive integer, got {num_frames!r}")
    single = [key for key in MEDIA_KINDS if key in record]
    if "media" in record:
        if single:
            raise fail(f"has both 'media' and '{single[0]}'; list every image and video under 'media'")
        entries = record["media"]
        if not isinstance(entries, list) or not entries:
            raise fail(f"'media' must be a non-empty list of {{\"video\": PATH}} / {{\"image\": PATH}}, got {entries!r}")
    elif len(single) == 2:
        raise fail("has both 'video' and 'image'; list several media items under 'media'")
    elif single:
        entries = [{single[0]: record[single[0]]}]
    else:
        return ()
    items = []
    for position, entry in enumerate(entries):
        where = f"media item {position}" if "media" in record else f"'{single[0]}'"
        if not isinstance(entry, dict):
            raise fail(f"{where} must be an object like {{\"video\": PATH}}, got {entry!r}")
        unknown = sorted(set(entry) - MEDIA_ITEM_KEYS)
        kinds = [key for key in MEDIA_KINDS if key in entry]
        if unknown or len(kinds) != 1:
            raise fail(f"{where} must have exactly one of 'video' / 'image' (and optionally 'num_frames'), "
                       f"got keys {sorted(entry)}")  # fmt: skip
        kind = kinds[0]
        value = entry[kind]
        if not isinstance(value, str) or not value:
            name = f"'{kind}'" if "media" not in record else f"{where} '{kind}'"
            raise fail(f"{name} must be a non-empty path string, got {value!r}")
        frames = entry.get("num_frames", num_frames)
        if frames is not None and not _positive_int(frames):
            raise fail(f"{where} 'num_frames' must be a positive integer, got {frames!r}")
        items.append(MediaItem(kind, root / value, frames))
    return tuple(items)


def _describe_media(media: tuple[MediaItem, ...]) -> str:
    if not media:
        return "no image or video"
    if len(media) == 1:
        return f"one {media[0].kind}"
    return f"{len(media)} media items ({', '.join(item.kind for item in media)})"


def parse_record(record: Any, index: int, source: str, root: str | Path) -> Sample:
    """Check one record's schema and placeholder count, and convert it to xtuner's conversation format.

    ``<video>`` becomes xtuner's ``<image>`` placeholder (one id in ``input_ids`` per media item, of either
    kind). The k-th placeholder in reading order (over the human turns) stands for the k-th media item.

    Raises:
        RecordError: naming the record and the problem.
    """
    rid = record.get("id") if isinstance(record, dict) else None

    def fail(reason: str, category: str = "schema") -> RecordError:
        return RecordError(source, index, rid, reason, category)

    if not isinstance(record, dict):
        raise fail(f"a record must be a JSON object, got {type(record).__name__}")
    media = _media_items(record, Path(root), fail)
    subtitles = record.get("subtitles")
    if subtitles is not None and not isinstance(subtitles, str):
        raise fail(f"'subtitles' must be a path string, got {subtitles!r}")
    task = record.get("task")

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
            if count:
                raise fail("the system turn contains a media placeholder; placeholders go in human turns",
                           "placeholders")  # fmt: skip
            system = value
        elif role == "user":
            if pending is not None:
                raise fail(f"turn {t}: two human turns in a row")
            placeholders += count
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
    if placeholders != len(media):
        raise fail(
            f"{placeholders} media placeholders ({IMAGE_TOKEN}/{VIDEO_TOKEN}) in its human turns but the record "
            f"has {_describe_media(media)}; each image or video needs exactly one placeholder, in the order of "
            "its media, and a text-only record none",
            "placeholders",
        )
    return Sample(index, rid, media, Path(root) / subtitles if subtitles else None, conversation,
                  task if isinstance(task, str) else None)  # fmt: skip


def check_media_path(sample: Sample, source: str) -> None:
    """Cheap existence checks of a sample's files (no decoding): what training can find out before step 1.

    Checks that every image or video exists, that a file is not empty, that a frame folder holds at least one
    image file (``IMAGE_EXTENSIONS``), and that the subtitles file, if named, exists. One ``stat`` per item.

    Raises:
        RecordError: ``media_missing``, ``media_empty`` or ``subtitles_missing`` (the first problem found).
    """

    def fail(reason: str, category: str) -> RecordError:
        return RecordError(source, sample.index, sample.record_id, reason, category)

    for item in sample.media:
        path = item.path
        if not path.exists():
            raise fail(f"{item.kind} not found: {path}", "media_missing")
        if path.is_dir():
            if item.kind == "image":
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
            raise fail(f"{item.kind} file is empty (0 bytes): {path}", "media_empty")
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
    """A video's own ``num_frames`` must not exceed the visual token count (CCAM needs frames <= queries).

    Raises:
        RecordError: ``too_many_frames``.
    """
    for item in sample.media:
        if item.kind == "video" and item.num_frames is not None and item.num_frames > num_queries:
            raise RecordError(
                source, sample.index, sample.record_id,
                f"num_frames={item.num_frames} > num_queries={num_queries}: the CCAM projector needs at most one "
                "frame per visual token; lower the record's num_frames",
                "too_many_frames",
            )  # fmt: skip
