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

import bisect
import difflib
import json
import os
import re
from collections import Counter
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


FIXES: dict[str, str] = {
    "json": "repair the line: each line of a .jsonl file holds one complete JSON object",
    "schema": "correct the record as data/README.md describes (\"The format\")",
    "no_answer": "give every human turn a gpt answer after it",
    "placeholders": "put one <video> or <image> in a human turn per media item, in media order",
    "media_missing": "correct the path in the record, or put the file there",
    "media_empty": "replace the file with a valid one, or remove the record",
    "media_corrupt": "replace or re-encode the file (check that it plays), or remove the record",
    "too_many_frames": "lower the record's num_frames to at most num_queries",
    "subtitles_missing": "correct the 'subtitles' path, or remove the field",
    "too_long": "shorten the text or raise max_length",
}
"""The default fix of each category, in one phrase; a raise site gives a more precise one where it can."""


def record_location(source: str, index: int, line: int | None = None, record_id: Any = None) -> str:
    """Where a record is, as every message says it: the file, the 1-based line and the 0-based record index.

    A ``.jsonl`` record is named by its line (``train.jsonl line 4 (record 3, 0-based; id='a')``), which differs
    from ``index + 1`` when the file has blank lines; a record of a ``.json`` list by its index and the line it
    starts on (``train.json record 3 (0-based; starts on line 12; id='a')``).
    """
    ident = f"; id={record_id!r}" if record_id is not None else ""
    if line is None:
        return f"{source} record {index} (0-based{ident})"
    if str(source).endswith(".jsonl"):
        return f"{source} line {line} (record {index}, 0-based{ident})"
    return f"{source} record {index} (0-based; starts on line {line}{ident})"


class RecordError(ValueError):
    """A record that cannot be used; the message names the file, the record (line and index), the problem and
    the fix: ``train.jsonl line 4 (record 3, 0-based; id='a'): video not found: ... (did you mean b.mp4?); fix:
    correct the path in the record, or put the file there``.

    Attributes:
        source: The data file.
        index: 0-based position of the record in the file (JSON list) or among its non-empty lines (JSONL).
        record_id: The record's ``id`` field, if any.
        reason: What is wrong, in words.
        category: One of :data:`CATEGORIES`.
        line: 1-based line of the record in the file (of a ``.json`` list: where the record starts); None when
            unknown.
        fix: What to do, in one phrase (default: the category's entry of :data:`FIXES`).
        path: The missing or empty file of a ``media_missing`` / ``media_empty`` / ``subtitles_missing`` error found
            while checking files (an index checks again whether it is there now), else None.
        pointer: Appended as the message's last line when the error stops a training run (where to look next).
    """

    def __init__(
        self, source: str, index: int = -1, record_id: Any = None, reason: str = "", category: str = "schema",
        line: int | None = None, fix: str | None = None, path: str | None = None, pointer: str = "",
    ) -> None:  # fmt: skip
        if category not in CATEGORIES:
            raise ValueError(f"unknown RecordError category {category!r}; expected one of {sorted(CATEGORIES)}")
        self.source, self.index, self.record_id, self.reason, self.category = (
            source, index, record_id, reason, category
        )  # fmt: skip
        self.line = None if line is None else int(line)
        self.fix = fix if fix is not None else FIXES[category]
        self.path = None if path is None else str(path)
        self.pointer = pointer
        if not reason:
            # A bare message: torch's DataLoader re-raises a worker's exception as ``type(e)(message)``.
            super().__init__(source)
            return
        message = f"{record_location(source, index, self.line, record_id)}: {reason}; fix: {self.fix}"
        super().__init__(message + (f"\n{pointer}" if pointer else ""))

    def __reduce__(self):  # picklable across DataLoader workers and process pools
        return (type(self), (self.source, self.index, self.record_id, self.reason, self.category, self.line,
                             self.fix, self.path, self.pointer))  # fmt: skip

    @property
    def text(self) -> str:
        """The error's text without its :attr:`pointer`: what a report lists for this record. (Not ``message``:
        torch's DataLoader re-raises an exception class with a ``message`` attribute as ``type(e)(message=...)``.)"""
        return str(self).split("\n", 1)[0]

    def with_pointer(self, pointer: str) -> RecordError:
        """The same error with ``pointer`` as the message's last line (see :attr:`pointer`)."""
        return type(self)(self.source, self.index, self.record_id, self.reason, self.category, self.line, self.fix,
                          self.path, pointer)  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        """``{"index", "line", "id", "source", "category", "reason", "fix"}`` (and ``"path"`` where set): one entry
        of a report, of an index's ``errors.json`` or of ``skipped_samples.json``."""
        return {
            "index": self.index,
            "line": self.line,
            "id": self.record_id,
            "source": self.source,
            "category": self.category,
            "reason": self.reason,
            "fix": self.fix,
            **({"path": self.path} if self.path is not None else {}),
        }

    @classmethod
    def from_dict(cls, entry: dict[str, Any]) -> RecordError:
        """The inverse of :meth:`as_dict`."""
        return cls(entry["source"], entry["index"], entry.get("id"), entry["reason"], entry["category"],
                   entry.get("line"), entry.get("fix"), entry.get("path"))  # fmt: skip


def json_error_reason(error: json.JSONDecodeError) -> str:
    """The reason of a malformed JSONL line (shared by :func:`load_records` and the index builder)."""
    return f"not valid JSON: {error.msg} (column {error.colno})"


class NearbyNames:
    """Suggestions for a missing file: the nearest name in its folder (``did you mean clip_002.mp4?``).

    Each folder is listed once, on its first missing file, and its names are kept sorted twice: as they are and
    reversed. A missing name is compared (:func:`difflib.get_close_matches`) only with its :data:`NEIGHBOURS`
    neighbours on each side in both orders, so a typo after a shared prefix or before a shared suffix finds
    its file without a comparison with every name. Only missing files pay anything. Time: one listing and sort
    per folder with a missing file (``O(n log n)`` in its ``n`` entries) and ``O(log n)`` plus ~80 short
    comparisons per distinct missing path; after ``max_lookups`` distinct missing paths the rest get no
    suggestion (a folder whose files are mostly absent), and folders of more than ``max_entries`` names none.
    Memory: the names of the listed folders, twice.
    """

    NEIGHBOURS = 20

    def __init__(self, max_entries: int = 200_000, max_lookups: int = 1000) -> None:
        self.max_entries, self.max_lookups = max_entries, max_lookups
        self._listings: dict[Path, tuple[list[str], list[str]] | None] = {}
        self._answers: dict[Path, str] = {}

    def _names(self, folder: Path) -> tuple[list[str], list[str]] | None:
        if folder not in self._listings:
            try:
                with os.scandir(folder) as entries:
                    names = [entry.name for entry in entries if not entry.name.startswith(".")]
            except OSError:
                names = []
            fits = 0 < len(names) <= self.max_entries
            self._listings[folder] = (sorted(names), sorted(n[::-1] for n in names)) if fits else None
        return self._listings[folder]

    def _nearest(self, name: str, listing: tuple[list[str], list[str]]) -> str | None:
        forward, backward = listing
        k = self.NEIGHBOURS
        i, j = bisect.bisect(forward, name), bisect.bisect(backward, name[::-1])
        candidates = set(forward[max(0, i - k) : i + k]) | {n[::-1] for n in backward[max(0, j - k) : j + k]}
        match = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)  # ties: the smaller name, always
        return match[0] if match else None

    def hint(self, path: Path) -> str:
        """`` (did you mean NAME?)``, `` (its folder FOLDER does not exist: ...)``, or ``""``."""
        if path in self._answers:
            return self._answers[path]
        folder = path.parent
        answer = ""
        if not folder.is_dir():
            answer = f" (its folder {folder} does not exist: check the data root and the path)"
        elif len(self._answers) < self.max_lookups:
            listing = self._names(folder)
            match = self._nearest(path.name, listing) if listing is not None else None
            answer = f" (did you mean {match}?)" if match else ""
        self._answers[path] = answer
        return answer


def load_records(path: str | Path, on_error: str = "raise") -> list[Any]:
    """Load a ``.json`` list or a ``.jsonl`` file into memory (the validator; training reads the index).

    Args:
        path: The data file (``.jsonl`` is read as JSON lines, anything else as one JSON list).
        on_error: ``"raise"``: a malformed line stops loading (a :class:`RecordError`, category ``json``).
            ``"skip"``: a malformed JSONL line becomes that :class:`RecordError` in its place in the returned list,
            so the caller can report or skip it and the other records keep their indices. A malformed ``.json``
            file always raises (nothing in it can be trusted).

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
                    error = RecordError(str(path), len(records), None, json_error_reason(e), "json", lineno)
                    if on_error == "raise":
                        raise error from e
                    records.append(error)
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
    line: int | None = None  # 1-based line of the record in its file (see record_location)

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
        raise fail(f"'num_frames' must be a positive integer, got {num_frames!r}",
                   fix="give a whole number of frames such as 16, or remove the field")  # fmt: skip
    single = [key for key in MEDIA_KINDS if key in record]
    if "media" in record:
        if single:
            raise fail(f"has both 'media' and '{single[0]}'",
                       fix=f"move '{single[0]}' into the 'media' list, in placeholder order")  # fmt: skip
        entries = record["media"]
        if not isinstance(entries, list) or not entries:
            raise fail(f"'media' must be a non-empty list, got {entries!r}",
                       fix='list the items as [{"video": PATH}, {"image": PATH}, ...], or remove the field')
    elif len(single) == 2:
        raise fail("has both 'video' and 'image'",
                   fix='list both under "media": [{"video": PATH}, {"image": PATH}], in placeholder order')
    elif single:
        entries = [{single[0]: record[single[0]]}]
    else:
        return ()
    items = []
    for position, entry in enumerate(entries):
        where = f"media item {position}" if "media" in record else f"'{single[0]}'"
        if not isinstance(entry, dict):
            raise fail(f"{where} must be an object, got {entry!r}", fix='write it as {"video": PATH}')
        unknown = sorted(set(entry) - MEDIA_ITEM_KEYS)
        kinds = [key for key in MEDIA_KINDS if key in entry]
        if unknown or len(kinds) != 1:
            raise fail(f"{where} has keys {sorted(entry)}",
                       fix="give it exactly one of 'video' / 'image' (and optionally 'num_frames')")  # fmt: skip
        kind = kinds[0]
        value = entry[kind]
        if not isinstance(value, str) or not value:
            name = f"'{kind}'" if "media" not in record else f"{where} '{kind}'"
            raise fail(f"{name} must be a non-empty path string, got {value!r}",
                       fix="give the file's path, relative to the data root")  # fmt: skip
        frames = entry.get("num_frames", num_frames)
        if frames is not None and not _positive_int(frames):
            raise fail(f"{where} 'num_frames' must be a positive integer, got {frames!r}",
                       fix="give a whole number of frames such as 16, or remove the field")  # fmt: skip
        items.append(MediaItem(kind, root / value, frames))
    return tuple(items)


def _count(n: int, what: str) -> str:
    return f"{n} {what}" + ("s" if n != 1 else "")


def _describe_media(media: tuple[MediaItem, ...]) -> str:
    if not media:
        return "no image or video"
    kinds = Counter(item.kind for item in media)
    return " and ".join(_count(kinds[kind], kind) for kind in MEDIA_KINDS if kinds[kind])


def _placeholder_error(tokens: Counter, media: tuple[MediaItem, ...]) -> tuple[str, str]:
    """(reason, fix) of a record whose placeholder count differs from its media count."""
    found = sum(tokens.values())
    named = " and ".join(_count(tokens[t], f"{t} placeholder") for t in (VIDEO_TOKEN, IMAGE_TOKEN) if tokens[t])
    reason = f"has {named or 'no <video> or <image> placeholder'} for {_describe_media(media)}"
    extra = abs(found - len(media))
    if not media:
        fix = f"remove the placeholder{'s' if extra > 1 else ''}, or name the media with 'video' / 'image' / 'media'"
    elif found > len(media):
        fix = "remove one" if extra == 1 else f"remove {extra} of them"
    else:
        add = "one" if extra == 1 else str(extra)
        fix = f"add {add} to a human turn: one <video> or <image> per media item, in media order"
    return reason, fix


def parse_record(record: Any, index: int, source: str, root: str | Path, line: int | None = None) -> Sample:
    """Check one record's schema and placeholder count, and convert it to xtuner's conversation format.

    ``<video>`` becomes xtuner's ``<image>`` placeholder (one id in ``input_ids`` per media item, of either
    kind). The k-th placeholder in reading order (over the human turns) stands for the k-th media item.

    Args:
        record: The decoded JSON record.
        index: Its 0-based position in the file.
        source: The data file (named in errors).
        root: The folder media paths are relative to.
        line: Its 1-based line in the file (named in errors; see :func:`record_location`).

    Raises:
        RecordError: naming the record, the problem and the fix.
    """
    rid = record.get("id") if isinstance(record, dict) else None

    def fail(reason: str, category: str = "schema", fix: str | None = None) -> RecordError:
        return RecordError(source, index, rid, reason, category, line, fix)

    if not isinstance(record, dict):
        raise fail(f"a record must be a JSON object, got {type(record).__name__}",
                   fix='write it as {"video": ..., "conversations": [...]}')  # fmt: skip
    media = _media_items(record, Path(root), fail)
    subtitles = record.get("subtitles")
    if subtitles is not None and not isinstance(subtitles, str):
        raise fail(f"'subtitles' must be a path string, got {subtitles!r}",
                   fix="give the .srt / .vtt file's path, relative to the data root, or remove the field")
    task = record.get("task")

    turns = record.get("conversations")
    if not isinstance(turns, list) or not turns:
        got = "is missing" if turns is None else f"is {turns!r}"
        raise fail(f"'conversations' {got}",
                   fix='give a list of turns: [{"from": "human", "value": ...}, {"from": "gpt", "value": ...}]')
    system = ""
    conversation: list[dict[str, str]] = []
    pending: str | None = None
    tokens: Counter = Counter()
    for t, turn in enumerate(turns):
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
            got = f"{turn!r}"[:80]
            raise fail(f"turn {t} is not an object with a string 'value': {got}",
                       fix='write each turn as {"from": "human" or "gpt", "value": TEXT}')  # fmt: skip
        role = ROLES.get(turn.get("from"))
        if role is None:
            raise fail(f"turn {t} has unknown 'from' {turn.get('from')!r}",
                       fix="use 'human' for questions and 'gpt' for answers (or 'user' / 'assistant'; "
                       "'system' first)")  # fmt: skip
        value = turn["value"]
        found = _PLACEHOLDER.findall(value)
        if role == "system":
            if t != 0:
                raise fail(f"turn {t} is a system turn after the first turn",
                           fix="move it to the start, or make it a human turn")  # fmt: skip
            if found:
                raise fail(f"the system turn contains {found[0]}", "placeholders",
                           fix="move the placeholder into a human turn")  # fmt: skip
            system = value
        elif role == "user":
            if pending is not None:
                raise fail(f"turns {t - 1} and {t} are two human turns in a row",
                           fix="merge them, or put the gpt answer between them")  # fmt: skip
            tokens.update(found)
            pending = _PLACEHOLDER.sub(IMAGE_TOKEN, value)
        else:
            if found:
                raise fail(f"turn {t} (a gpt answer) contains {found[0]}", "placeholders",
                           fix="move the placeholder into the human turn before it")  # fmt: skip
            if pending is None:
                raise fail(f"turn {t} is a gpt turn without a human turn before it",
                           fix="put the question (a human turn) before it")  # fmt: skip
            item = {"input": pending, "output": value}
            if system and not conversation:
                item["system"] = system
            conversation.append(item)
            pending = None
    if not conversation:
        raise fail("no answer turn: a record needs at least one human turn followed by a gpt turn", "no_answer",
                   fix="add the answer as a gpt turn after the question")  # fmt: skip
    if pending is not None:
        raise fail("the last human turn has no gpt answer", "no_answer",
                   fix="add its answer as a gpt turn, or remove the question")  # fmt: skip
    if sum(tokens.values()) != len(media):
        reason, fix = _placeholder_error(tokens, media)
        raise fail(reason, "placeholders", fix)
    return Sample(index, rid, media, Path(root) / subtitles if subtitles else None, conversation,
                  task if isinstance(task, str) else None, line)  # fmt: skip


def check_media_path(sample: Sample, source: str, names: NearbyNames | None = None) -> None:
    """Cheap existence checks of a sample's files (no decoding): what training can find out before step 1.

    Checks that every image or video exists, that a file is not empty, that a frame folder holds at least one
    image file (``IMAGE_EXTENSIONS``), and that the subtitles file, if named, exists. One ``stat`` per item; a
    missing file's message suggests the nearest name in its folder (``names``; a fresh one if None).

    Raises:
        RecordError: ``media_missing``, ``media_empty`` or ``subtitles_missing`` (the first problem found).
    """
    names = names if names is not None else NearbyNames()

    def fail(reason: str, category: str, path: Path, fix: str | None = None) -> RecordError:
        return RecordError(source, sample.index, sample.record_id, reason, category, sample.line, fix, path)

    for item in sample.media:
        path = item.path
        if not path.exists():
            raise fail(f"{item.kind} not found: {path}{names.hint(path)}", "media_missing", path)
        if path.is_dir():
            if item.kind == "image":
                raise fail(f"image is a directory, expected an image file: {path}", "media_empty", path,
                           fix="name an image file, or list the folder of frames as a 'video'")  # fmt: skip
            with os.scandir(path) as entries:
                has_frames = any(
                    entry.name.lower().endswith(IMAGE_EXTENSIONS) and not entry.name.startswith(".")
                    and entry.is_file()
                    for entry in entries
                )  # fmt: skip
            if not has_frames:
                raise fail(f"frame folder has no image files ({', '.join(IMAGE_EXTENSIONS)}): {path}", "media_empty",
                           path, fix="put the video's frames in it as image files, or remove the record")  # fmt: skip
        elif path.stat().st_size == 0:
            raise fail(f"{item.kind} file is empty (0 bytes): {path}", "media_empty", path)
    subtitles = sample.subtitles
    if subtitles is not None and not subtitles.is_file():
        raise fail(f"subtitles file not found: {subtitles}{names.hint(subtitles)}", "subtitles_missing", subtitles)


FILE_CATEGORIES = ("media_missing", "media_empty", "subtitles_missing")
"""Categories of :func:`check_media_path`: a verdict about a file that adding or replacing the file changes."""


def file_problem_fixed(path: str | Path, category: str) -> bool:
    """Whether the file of a :data:`FILE_CATEGORIES` error is there now (exists, is not empty; one ``stat``)."""
    path = Path(path)
    if category == "subtitles_missing":
        return path.is_file()
    return media_error_category(path) == "media_corrupt"  # neither missing nor empty: whether it decodes is later


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
                "frame per visual token", "too_many_frames", sample.line,
                f"lower the record's num_frames to at most {num_queries}",
            )  # fmt: skip
