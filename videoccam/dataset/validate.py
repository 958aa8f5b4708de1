"""Check a custom data file before training, with the code training uses (tools/validate_data.py is its CLI).

For every record, in the order training would meet the problems:

1. the JSON itself (a malformed JSONL line is a bad record, naming its line);
2. the schema and the placeholder count against the media (:func:`records.parse_record`);
3. each video's own ``num_frames`` against the visual token count (:func:`records.check_num_frames`);
4. that every image / video / frame folder / subtitles file exists and is not empty
   (:func:`records.check_media_path`);
5. with a tokenizer: the tokenised length against the text budget, i.e. the LLM context minus the fixed visual
   tokens of every media item (:func:`tokenize.tokenize_sample`): a sample whose placeholder or whole answer would
   be cut away is bad, one that is only truncated is a warning saying how much of the answer survives;
6. that every media item decodes: exactly the frames the dataset's sampler takes
   (:meth:`video_io.FrameSampling.load`), at least one frame and at most ``num_queries``. Decoding runs in a
   thread pool (decord, PyAV and PIL release the GIL) or a process pool, and every distinct (file, frame count)
   is decoded once.

Steps 1-5 are the checks the training index runs (:mod:`videoccam.dataset.index`), so a record is *bad* exactly
when a training run with ``on_error="raise"`` would stop on it (or ``"skip"`` would drop it); where training
stops at a record's first problem, the validator lists them all. :func:`validate_data` returns a
:class:`ValidationReport`; nothing here prints except the progress bars. It holds every record's result in
memory: for very large files, validate a sample of shards or rely on training's index (``tools/build_index.py``).
"""

from __future__ import annotations

import difflib
import os
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import (
    Executor,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    as_completed,
)
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from videoccam.dataset.index import scan_records
from videoccam.dataset.records import (
    CATEGORIES,
    KNOWN_KEYS,
    NearbyNames,
    RecordError,
    Sample,
    check_media_path,
    check_num_frames,
    load_records,
    media_error_category,
    parse_record,
    record_location,
)
from videoccam.dataset.video_io import FrameSampling, MediaLoadError

POOLS = ("thread", "process")


@dataclass
class RecordResult:
    """What the validator found out about one record.

    Attributes:
        index: 0-based record index (as in training's error messages and ``skipped_samples.json``).
        line: 1-based line of the record in the file (of a ``.json`` list: where it starts).
        record_id: The record's ``id``, if any.
        kind: ``video``, ``image``, ``text``, ``mixed`` (several kinds of media), or ``None`` when the record
            could not be parsed.
        errors: Problems that make the record unusable: ``{"category", "reason", "fix"}`` dicts.
        warnings: Problems training tolerates (truncation that keeps part of the answer, unknown fields).
        num_frames: Frames the sampler takes from all its media (after decoding), if checked.
        media_frames: The same per media item, in placeholder order.
        num_tokens: LLM length before truncation (text + visual tokens), if a tokenizer was given.
        truncated: Whether training truncates the sample.
    """

    index: int
    line: int | None = None
    record_id: Any = None
    kind: str | None = None
    errors: list[dict[str, str]] = field(default_factory=list)
    warnings: list[dict[str, str]] = field(default_factory=list)
    num_frames: int | None = None
    media_frames: list[int] | None = None
    num_tokens: int | None = None
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return not self.errors

    def add_error(self, error: RecordError) -> None:
        self.errors.append({"category": error.category, "reason": error.reason, "fix": error.fix})

    def messages(self, source: str) -> list[str]:
        """Each error as training says it (:class:`RecordError`'s message: file, line, record, reason, fix)."""
        return [RecordError(source, self.index, self.record_id, e["reason"], e["category"], self.line, e["fix"]).text
                for e in self.errors]  # fmt: skip


@dataclass
class ValidationReport:
    """Result of :func:`validate_data`.

    Attributes:
        data_path: The data file.
        root: Folder media paths are relative to.
        results: One :class:`RecordResult` per record, in file order.
        settings: The checks' settings (sampling, num_queries, max_length, ...).
        length_checked: Whether tokenised lengths were checked (a tokenizer was given).
        decoded: Whether media were decoded (otherwise only their existence was checked).
        seconds: Wall time.
    """

    data_path: str
    root: str
    results: list[RecordResult]
    settings: dict[str, Any]
    length_checked: bool
    decoded: bool
    seconds: float = 0.0

    @property
    def bad(self) -> list[RecordResult]:
        return [r for r in self.results if not r.ok]

    @property
    def num_ok(self) -> int:
        return sum(r.ok for r in self.results)

    @property
    def error_counts(self) -> dict[str, int]:
        """Bad records per category (a record counts once per category it has)."""
        counts = Counter(category for r in self.bad for category in {e["category"] for e in r.errors})
        return dict(sorted(counts.items()))

    @property
    def warning_counts(self) -> dict[str, int]:
        counts = Counter(category for r in self.results for category in {w["category"] for w in r.warnings})
        return dict(sorted(counts.items()))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: totals, settings, and every record with an error or a warning."""
        return {
            "data_path": self.data_path,
            "root": self.root,
            "num_records": len(self.results),
            "num_ok": self.num_ok,
            "num_bad": len(self.bad),
            "bad_by_category": self.error_counts,
            "warnings_by_category": self.warning_counts,
            "length_checked": self.length_checked,
            "decoded": self.decoded,
            "settings": self.settings,
            "seconds": round(self.seconds, 3),
            "records": [asdict(r) for r in self.results if r.errors or r.warnings],
        }

    def format(self, show_warnings: bool = True) -> str:
        """Human-readable report: one line per bad record (and warning), then totals."""
        lines = [f"Validated {self.data_path} (media root {self.root})"]
        lines.append("  " + ", ".join(f"{k}={v}" for k, v in self.settings.items() if v is not None))
        if not self.length_checked:
            lines.append("  lengths NOT checked: pass --config, or --tokenizer with --num-queries and --max-length")
        if not self.decoded:
            lines.append("  media NOT decoded (--no-decode): only checked that files exist")
        for r in self.results:
            for e, message in zip(r.errors, r.messages(self.data_path)):
                lines.append(f"BAD   [{e['category']}] {message}")
            if show_warnings:
                where = record_location(self.data_path, r.index, r.line, r.record_id)
                for w in r.warnings:
                    lines.append(f"WARN  [{w['category']}] {where}: {w['reason']}")
        lines.append(
            f"Totals: {len(self.results)} records, {self.num_ok} ok, {len(self.bad)} bad"
            + (f", {sum(bool(r.warnings) for r in self.results)} with warnings" if self.warning_counts else "")
            + f" ({self.seconds:.1f} s)"
        )
        for category, count in self.error_counts.items():
            lines.append(f"  bad   {category:<18} {count:>6}  {CATEGORIES.get(category, '')}")
        for category, count in self.warning_counts.items():
            lines.append(f"  warn  {category:<18} {count:>6}")
        return "\n".join(lines)


def _decode_task(path: Path, kind: str, num_frames: int | None, sampling: FrameSampling) -> tuple[int | None, str]:
    """Decode what the sampler takes; ``(frames, "")`` or ``(None, reason)``. Top level: process pools pickle it."""
    try:
        clip = sampling.load(path, kind, num_frames, output="numpy")
    except MediaLoadError as error:
        return None, str(error)
    except Exception as error:  # noqa: BLE001 - a decoder crash on one file must not end the whole report
        return None, f"{path}: {type(error).__name__}: {error}"
    return len(clip.frames), ""


def _make_pool(pool: str, workers: int) -> Executor:
    if pool == "thread":
        return ThreadPoolExecutor(max_workers=workers)
    import multiprocessing

    # forkserver/spawn: the parent may hold tokenizer and tqdm threads, which fork does not copy safely. This
    # module imports no xtuner, so workers start quickly.
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(method))


def _warn_fields_and_ids(result: RecordResult, record: Any, seen_ids: dict[Any, tuple[int, int]]) -> None:
    """Warnings that do not stop training: unknown fields, an id used twice."""
    if isinstance(record, RecordError) or not isinstance(record, dict):
        return
    result.record_id = record.get("id")
    unknown = sorted(set(record) - KNOWN_KEYS)
    if unknown:
        guesses = [f"{key!r} -> {close[0]!r}" for key in unknown
                   for close in [difflib.get_close_matches(key, KNOWN_KEYS, n=1)] if close]  # fmt: skip
        reason = f"fields {unknown} are ignored (known: {sorted(KNOWN_KEYS)})" + (
            f"; did you mean {', '.join(guesses)}?" if guesses else "")  # fmt: skip
        result.warnings.append({"category": "unknown_fields", "reason": reason})
    rid = record.get("id")
    if rid is not None and isinstance(rid, (str, int)):
        if rid in seen_ids:
            result.warnings.append(
                {"category": "duplicate_id", "reason": f"id {rid!r} also used by record {seen_ids[rid][0]} (line "
                 f"{seen_ids[rid][1]}); give each record its own id"}
            )
        else:
            seen_ids[rid] = (result.index, result.line)


def _check_record(
    result: RecordResult,
    record: Any,
    source: str,
    root: Path,
    num_queries: int | None,
    max_length: int | None,
    tokenize: Callable[[Sample], dict[str, Any]] | None,
    names: NearbyNames,
) -> Sample | None:
    """Every check that needs no decoding, into ``result``; returns the sample when its media can be decoded."""
    index = result.index
    if isinstance(record, RecordError):
        result.add_error(record)
        return None
    try:
        sample = parse_record(record, index, source, root, result.line)
    except RecordError as error:
        result.add_error(error)
        return None
    result.kind = sample.kind
    if num_queries is not None:
        try:
            check_num_frames(sample, num_queries, source)
        except RecordError as error:
            result.add_error(error)
    media_ok = True
    try:
        check_media_path(sample, source, names)
    except RecordError as error:
        result.add_error(error)
        media_ok = error.category == "subtitles_missing"  # the media itself may still be checked
    if tokenize is not None:
        try:
            tokens = tokenize(sample)
        except RecordError as error:
            result.add_error(error)
        else:
            result.num_tokens, result.truncated = tokens["num_tokens"], tokens["truncated"]
            if tokens["truncated"]:
                result.warnings.append({
                    "category": "truncated",
                    "reason": f"over-long: {tokens['num_tokens']} LLM tokens > max_length={max_length}; "
                    f"truncation keeps {tokens['kept_answer_tokens']} of {tokens['answer_tokens']} answer "
                    "tokens",
                })  # fmt: skip
    return sample if media_ok else None


def _decode_media(
    results: list[RecordResult],
    to_decode: dict[int, Sample],
    source: str,
    sampling: FrameSampling,
    num_queries: int | None,
    workers: int,
    pool: str,
    progress: bool,
) -> None:
    """Decode the media of ``to_decode`` (record index -> sample) and record frame counts or errors."""
    # Decode each distinct (media, frame count) once: QA datasets often ask several questions per video.
    jobs: dict[tuple[str, str, int | None], list[int]] = {}
    for index, sample in to_decode.items():
        for item in sample.media:
            users = jobs.setdefault((str(item.path), item.kind, item.num_frames), [])
            if index not in users:
                users.append(index)
    outcomes: dict[tuple[str, str, int | None], tuple[int | None, str]] = {}
    bar = tqdm(total=len(jobs), desc="decoding media", disable=not progress or not jobs, mininterval=1)
    if workers == 1 or len(jobs) <= 1:
        for key in jobs:
            outcomes[key] = _decode_task(Path(key[0]), key[1], key[2], sampling)
            bar.update()
    else:
        with _make_pool(pool, min(workers, len(jobs))) as executor:
            futures = {executor.submit(_decode_task, Path(key[0]), key[1], key[2], sampling): key for key in jobs}
            for future in as_completed(futures):
                outcomes[futures[future]] = future.result()
                bar.update()
    bar.close()
    for index, sample in to_decode.items():
        result, frames = results[index], []
        for item in sample.media:
            count, reason = outcomes[(str(item.path), item.kind, item.num_frames)]
            if count is None:
                result.add_error(RecordError(source, index, result.record_id, reason, media_error_category(item.path),
                                             result.line))  # fmt: skip
                break
            if num_queries is not None and count > num_queries:
                result.add_error(RecordError(
                    source, index, result.record_id, f"{item.path}: {count} frames > num_queries={num_queries}",
                    "too_many_frames", result.line, "lower num_frames / max_frames of the record or the dataset",
                ))  # fmt: skip
                break
            frames.append(count)
        else:
            result.media_frames, result.num_frames = frames, sum(frames)


def validate_data(
    data_path: str | os.PathLike,
    root: str | os.PathLike | None = None,
    *,
    tokenizer: Any = None,
    template: Any = None,
    num_queries: int | None = None,
    max_length: int | None = None,
    sampling: FrameSampling | None = None,
    workers: int = 4,
    pool: str = "thread",
    decode: bool = True,
    progress: bool = True,
) -> ValidationReport:
    """Check every record of a data file the way training will use it.

    Args:
        data_path: ``.json`` list or ``.jsonl`` file.
        root: Folder media paths are relative to (default: the data file's folder, as the dataset).
        tokenizer: The LLM's tokenizer; with ``template``, ``num_queries`` and ``max_length`` it enables the
            length check. ``None`` skips it (reported in :attr:`ValidationReport.length_checked`).
        template: xtuner ``PROMPT_TEMPLATE`` entry (e.g. ``PROMPT_TEMPLATE.qwen_chat``).
        num_queries: Visual tokens per image or video (the projector's ``num_queries``).
        max_length: LLM context per sample, visual tokens included.
        sampling: The dataset's frame sampling (default: ``uniform``, 16 frames).
        workers: Parallel decoders (1: decode in this thread).
        pool: ``thread`` or ``process``.
        decode: ``False`` only checks that media exist (fast, no decoding).
        progress: Show tqdm progress bars (on stderr).

    Returns:
        A :class:`ValidationReport`.

    Raises:
        FileNotFoundError: The data file does not exist.
        ValueError: The data file is not valid JSON (a ``.json`` file; naming the line), or bad arguments.
    """
    if pool not in POOLS:
        raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    length_check = tokenizer is not None
    if length_check and (template is None or num_queries is None or max_length is None):
        raise ValueError("the length check needs template, num_queries and max_length with the tokenizer")
    sampling = sampling or FrameSampling()
    start = time.perf_counter()
    source = str(data_path)
    root = Path(root) if root is not None else Path(data_path).parent
    records = load_records(data_path, on_error="skip")
    lines = scan_records(data_path).linenos  # the same records: JSON lines with content, or the list's items
    tokenize = None
    if length_check:
        from videoccam.dataset.tokenize import tokenize_sample

        def tokenize(sample: Sample) -> dict[str, Any]:
            return tokenize_sample(sample, tokenizer, template, max_length, num_queries, source)

    results: list[RecordResult] = []
    to_decode: dict[int, Sample] = {}
    seen_ids: dict[Any, tuple[int, int]] = {}
    names = NearbyNames()  # one listing per folder with a missing file
    for index, record in enumerate(tqdm(records, desc="checking records", disable=not progress, mininterval=1)):
        result = RecordResult(index=index, line=int(lines[index]))
        results.append(result)
        _warn_fields_and_ids(result, record, seen_ids)
        sample = _check_record(result, record, source, root, num_queries, max_length, tokenize, names)
        if sample is not None and sample.media and decode:
            to_decode[index] = sample
        elif sample is not None and sample.kind == "image":
            result.media_frames = [1] * len(sample.media)
            result.num_frames = len(sample.media)
    _decode_media(results, to_decode, source, sampling, num_queries, workers, pool, progress)

    settings = {
        "sampling": sampling.sampling,
        "num_frames": sampling.num_frames,
        "target_fps": sampling.target_fps,
        "max_frames": sampling.max_frames if sampling.sampling == "fps" else None,
        "num_queries": num_queries,
        "max_length": max_length,
        "text_budget": None if max_length is None or num_queries is None else max_length - num_queries,
        "workers": workers,
        "pool": pool,
    }
    return ValidationReport(
        data_path=source,
        root=str(root),
        results=results,
        settings=settings,
        length_checked=length_check,
        decoded=decode,
        seconds=time.perf_counter() - start,
    )

