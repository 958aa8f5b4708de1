"""The tokenised index of a data file: built once, on disk, shared by every rank and DataLoader worker.

Checking and tokenising a million records takes minutes; doing it in every rank and keeping a Python object per
record costs every rank and every DataLoader worker gigabytes (pytorch#13246). So each data file is checked and
tokenised **once**, by one process with a pool of worker processes, into an index folder that every process
then opens **memory-mapped** (Arrow files read through Hugging Face ``datasets``, the format of xtuner's offline
LLaVA processing). Readers keep no Python object per record: :meth:`TokenIndex.row` builds one record's values
from the mapped columns when ``__getitem__`` asks for it.

**Layout** of ``<index_dir>/<file stem>-<key>/``:

* ``data/``: a ``datasets.Dataset.save_to_disk`` folder (``datasets.load_from_disk`` opens it), one row per
  usable record, in file order: ``input_ids`` (truncated to the text budget), ``label_spans`` (the answer
  spans, flat ``[start, end, start, end, ...]``: labels are the ids inside them), ``media_kind`` /
  ``media_path`` / ``media_num_frames`` (one entry per image or video, in placeholder order; frames 0 = the
  dataset's), ``record_index`` (position in the file), ``line`` (its 1-based line; of a ``.json`` list, where
  the record starts), ``byte_offset`` / ``byte_length`` (where the record's
  JSON is in the file), ``id`` (the record's ``id`` as JSON), ``task``, ``num_tokens`` (the untruncated LLM
  length), ``length`` (LLM tokens after truncation, visual tokens included), ``answer_tokens`` (trained
  tokens after truncation), ``truncated``, ``num_media``. Absent when no record is usable;
* ``errors.json``: every record that cannot be used (``RecordError.as_dict()``: its line, reason and fix, a
  missing file's nearest-name suggestion included), in file order;
* ``meta.json``: the key's fields, counts and build time.

**Key.** The folder name ends with a hash of everything that shapes its content: the data file (absolute path,
size, mtime and the SHA-256 of its bytes), the media root, the tokenizer (its class, its full serialisation,
special and added tokens), the chat template, ``max_length``, ``num_queries``, the frame-count settings,
``check_files``, ``max_records``, and the version of the code that writes it (the source of ``records.py``,
``tokenize.py`` and this file, and the tokenizers / transformers versions). Change any of them and the key
changes: a new index is built, a stale one is never read (old folders stay until deleted).

**One builder, atomic writes.** An index is written into a ``.<name>.tmp-<pid>-<random>`` folder beside its
final place and renamed into place as the last step (a folder rename is atomic), so an index folder is complete
by construction: a build killed with ``kill -9`` leaves only a temporary folder, which no reader opens and the
next builder removes. Builders hold an exclusive lock (``<name>.lock``, ``flock``) while they build, so two runs
that need the same index at once build it once: the second waits, then opens it. In a distributed run the local
rank 0 of each node builds (``LOCAL_RANK``); the other ranks wait for the folder to appear and then open it, with
no collective (a build may take longer than a process group's timeout). On a shared file system the lock makes
the local ranks 0 of the nodes build it once per job.

Sizes: the index stores about 4 bytes per token plus ~60 bytes per record and media path. Building reads the
file twice (hash, then records) and tokenises each record once: time grows linearly with the records, divided
by the workers; the builder's memory grows with one unit of records per worker. Opening maps the files (no
read) and copies the small per-record columns a dataset needs (a few bytes per record).
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from videoccam.dataset.records import (
    FILE_CATEGORIES,
    NearbyNames,
    RecordError,
    check_media_path,
    check_num_frames,
    file_problem_fixed,
    json_error_reason,
    parse_record,
)
from videoccam.dataset.tokenize import tokenize_samples

__all__ = ["INDEX_FORMAT", "IndexSettings", "TokenIndex", "default_index_dir", "ensure_indexes", "scan_records"]

INDEX_FORMAT = 2  # 2: records' lines and errors' fixes stored
UNIT_RECORDS = 4096  # records per work unit (one Arrow batch): the builder's memory per worker
POOL_MIN_RECORDS = 8192  # fewer records are indexed in the building process (starting a pool costs seconds)
_SCAN_BLOCK = 64 * 2**20
_WHITESPACE = np.zeros(256, dtype=bool)
_WHITESPACE[[9, 10, 11, 12, 13, 32]] = True  # what bytes.strip() removes
_JSON_WS = re.compile(r"[ \t\n\r]*")
_CODE_FILES = ("records.py", "tokenize.py", "index.py")


def default_index_dir() -> Path:
    """``$VIDEOCCAM_INDEX_DIR``, else ``~/.cache/videoccam/index``."""
    env = os.environ.get("VIDEOCCAM_INDEX_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "videoccam" / "index"


def _log(message: str, level: int = logging.INFO) -> None:
    from mmengine.logging import print_log

    print_log(message, "current", level)


# ----------------------------------------------------------------------------------------------------------------
# The key
# ----------------------------------------------------------------------------------------------------------------
def code_version() -> str:
    """Hash of the code that decides an index's content, and of the tokenizer libraries' versions."""
    import tokenizers
    import transformers

    digest = hashlib.sha256(f"format {INDEX_FORMAT}|{tokenizers.__version__}|{transformers.__version__}".encode())
    here = Path(__file__).parent
    for name in _CODE_FILES:
        digest.update((here / name).read_bytes())
    return digest.hexdigest()[:16]


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """Hash of what decides a tokenizer's ids: class, full serialisation (vocabulary, merges, normaliser,
    pre-tokeniser, added tokens) and settings other than file locations."""
    digest = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        digest.update(backend.to_str().encode())
    else:  # a slow (Python) tokenizer
        digest.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    settings = {k: v for k, v in getattr(tokenizer, "init_kwargs", {}).items()
                if not k.endswith("_file") and k not in ("name_or_path", "_commit_hash")}  # fmt: skip
    extra = {"settings": settings, "special": getattr(tokenizer, "special_tokens_map", {}),
             "added": sorted(getattr(tokenizer, "get_added_vocab", dict)().items())}  # fmt: skip
    digest.update(json.dumps(extra, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def file_identity(path: Path) -> dict[str, Any]:
    """Absolute path, size, mtime (ns) and SHA-256 of a data file (reads it once)."""
    stat = path.stat()
    with open(path, "rb") as f:
        sha = hashlib.file_digest(f, "sha256").hexdigest()
    return {"path": os.path.abspath(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha}


@dataclass
class IndexSettings:
    """Everything except the data file and its media root that shapes an index.

    Args:
        tokenizer: The LLM's tokenizer.
        template: The xtuner ``PROMPT_TEMPLATE`` entry.
        num_queries: Visual tokens per media item.
        max_length: LLM context per sample, visual tokens included.
        check_files: Whether media files are checked for existence (one ``stat`` per item).
        max_records: Only the first N records of each file (None: all).
        frames: The dataset's frame-count settings (``num_frames``, ``sampling``, ``target_fps``, ``max_frames``).
    """

    tokenizer: Any
    template: Mapping[str, Any]
    num_queries: int
    max_length: int
    check_files: bool = True
    max_records: int | None = None
    frames: Mapping[str, Any] = field(default_factory=dict)
    _fields: dict[str, Any] | None = field(default=None, repr=False)

    def key_fields(self) -> dict[str, Any]:
        """The settings' part of every index key (the tokenizer is fingerprinted once)."""
        if self._fields is None:
            self._fields = {
                "code": code_version(),
                "tokenizer": tokenizer_fingerprint(self.tokenizer),
                "template": {k: self.template[k] for k in sorted(self.template)},
                "num_queries": self.num_queries,
                "max_length": self.max_length,
                "check_files": self.check_files,
                "max_records": self.max_records,
                "frames": dict(sorted(dict(self.frames).items())),
            }
        return self._fields

    def __getstate__(self) -> dict[str, Any]:  # sent to builder processes with the tokenizer
        return {k: v for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class IndexJob:
    """One data file to index: the file, its media root, its folder and key fields."""

    file: str  # as the user wrote it: the source named in error messages
    root: str  # absolute media root
    path: Path  # the index folder
    fields: dict[str, Any]


def index_job(file: str, root: str | os.PathLike, settings: IndexSettings, index_dir: Path) -> IndexJob:
    """The index folder of ``file`` under the current settings (hashes the file)."""
    root = os.path.abspath(root)
    fields = {"format": INDEX_FORMAT, "file": file_identity(Path(file)), "root": root, **settings.key_fields()}
    return _job(file, root, fields, Path(index_dir))


def _job(file: str, root: str, fields: dict[str, Any], index_dir: Path) -> IndexJob:
    key = hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:20]
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(file).stem)[:60] or "data"
    return IndexJob(file, root, index_dir / f"{stem}-{key}", fields)


def fixed_files(index: TokenIndex) -> list[str]:
    """The files that ``index`` found missing or empty and that are there now (one ``stat`` per such error).

    The key holds the data file, not its media: a file added or replaced after the build would keep its record's
    stale verdict. :func:`ensure_indexes` re-keys such an index with this list (``fields["fixed_files"]``), so the
    records are checked again, once.
    """
    fixed = {e["path"] for e in index.errors() if e.get("path") and e["category"] in FILE_CATEGORIES
             and file_problem_fixed(e["path"], e["category"])}  # fmt: skip
    return sorted(fixed)


def _complete(path: Path) -> bool:
    return (path / "meta.json").is_file()


# ----------------------------------------------------------------------------------------------------------------
# Scanning a data file: where each record's JSON is
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class RecordSpans:
    """Byte spans of a file's records: ``starts``/``ends`` (int64), ``linenos`` (int64, 1-based: the record's line
    in JSON lines, the line it starts on in a ``.json`` list)."""

    starts: np.ndarray
    ends: np.ndarray
    linenos: np.ndarray

    def __len__(self) -> int:
        return len(self.starts)


def scan_records(path: str | os.PathLike, max_records: int | None = None) -> RecordSpans:
    """Where the records of a ``.jsonl`` (lines with more than whitespace) or ``.json`` list file are.

    JSON lines are scanned in 64 MiB blocks with numpy (memory: one block); a ``.json`` list is decoded whole
    and walked element by element, counting the newlines before each record (memory: the text). Time grows with
    the file.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a ``.json`` file that is not valid JSON, not UTF-8, or not a list (naming the line).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    spans = _scan_json_lines(path, max_records) if path.suffix == ".jsonl" else _scan_json_list(path)
    if max_records is not None and len(spans) > max_records:
        cut = slice(0, max_records)
        spans = RecordSpans(spans.starts[cut], spans.ends[cut], spans.linenos[cut])
    return spans


def _scan_json_lines(path: Path, max_records: int | None) -> RecordSpans:
    starts, ends, linenos = [], [], []
    offset, lineno, count, carry = 0, 0, 0, b""
    with open(path, "rb") as f:
        while max_records is None or count < max_records:
            block = f.read(_SCAN_BLOCK)
            buf = carry + block if carry else block
            if not buf:
                break
            data = np.frombuffer(buf, dtype=np.uint8)
            newlines = np.flatnonzero(data == 10)
            if not block and (not len(newlines) or newlines[-1] != len(data) - 1):
                newlines = np.append(newlines, len(data))  # the last line has no newline
            if not len(newlines):
                carry = buf
                continue
            line_starts = np.empty(len(newlines), dtype=np.int64)
            line_starts[0] = 0
            line_starts[1:] = newlines[:-1] + 1
            content = ~_WHITESPACE[data[: newlines[-1] + 1]]
            has_content = np.logical_or.reduceat(content, line_starts)
            keep = np.flatnonzero(has_content)
            starts.append(offset + line_starts[keep])
            ends.append(offset + newlines[keep])
            linenos.append(lineno + 1 + keep)
            count += len(keep)
            lineno += len(newlines)
            consumed = int(newlines[-1]) + 1
            carry = buf[consumed:]
            offset += consumed
    join = (lambda parts: np.concatenate(parts).astype(np.int64)) if starts else (lambda _: np.zeros(0, np.int64))
    return RecordSpans(join(starts), join(ends), join(linenos))


def _scan_json_list(path: Path) -> RecordSpans:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e})") from e

    def invalid() -> ValueError:  # the whole-document parser's message, naming line and column
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            return ValueError(f"{path}: not valid JSON at line {e.lineno} column {e.colno}: {e.msg}")
        return ValueError(f"{path}: expected a JSON list of records, got {type(data).__name__}")

    decoder = json.JSONDecoder()
    pos = _JSON_WS.match(text, 0).end()
    if text[pos : pos + 1] != "[":
        raise invalid()
    pos = _JSON_WS.match(text, pos + 1).end()
    char_spans = []
    if text[pos : pos + 1] == "]":
        pos += 1
    else:
        while True:
            try:
                _, end = decoder.raw_decode(text, pos)
            except json.JSONDecodeError:
                raise invalid() from None
            char_spans.append((pos, end))
            pos = _JSON_WS.match(text, end).end()
            if text[pos : pos + 1] == ",":
                pos = _JSON_WS.match(text, pos + 1).end()
                continue
            if text[pos : pos + 1] != "]":
                raise invalid()
            pos += 1
            break
    if text[_JSON_WS.match(text, pos).end() :]:
        raise invalid()
    linenos, newlines, chars = [], 0, 0
    for start, _ in char_spans:  # the line each record starts on: one pass over the text
        newlines += text.count("\n", chars, start)
        chars = start
        linenos.append(newlines + 1)
    if len(text) == len(raw):  # ASCII: characters are bytes
        byte_spans = char_spans
    else:
        byte_spans, chars, byte = [], 0, 0
        for start, end in char_spans:
            byte += len(text[chars:start].encode())
            first = byte
            byte += len(text[start:end].encode())
            chars = end
            byte_spans.append((first, byte))
    array = np.asarray(byte_spans, dtype=np.int64).reshape(-1, 2)
    return RecordSpans(array[:, 0].copy(), array[:, 1].copy(), np.asarray(linenos, dtype=np.int64))


# ----------------------------------------------------------------------------------------------------------------
# Building
# ----------------------------------------------------------------------------------------------------------------
_SCHEMA_FIELDS = (
    ("input_ids", "list<int32>"),
    ("label_spans", "list<int32>"),
    ("media_kind", "list<string>"),
    ("media_path", "list<string>"),
    ("media_num_frames", "list<int32>"),
    ("record_index", "int64"),
    ("line", "int64"),
    ("byte_offset", "int64"),
    ("byte_length", "int64"),
    ("id", "string"),
    ("task", "string"),
    ("num_tokens", "int32"),
    ("length", "int32"),
    ("answer_tokens", "int32"),
    ("truncated", "bool"),
    ("num_media", "int16"),
)


_ROW_COLUMNS = ("input_ids", "label_spans", "media_kind", "media_path", "media_num_frames", "record_index",
                "line", "byte_offset", "byte_length", "id")  # what TokenIndex.row reads


def _schema() -> Any:
    import pyarrow as pa

    types = {"list<int32>": pa.list_(pa.int32()), "list<string>": pa.list_(pa.string()), "int64": pa.int64(),
             "int32": pa.int32(), "int16": pa.int16(), "bool": pa.bool_(), "string": pa.string()}  # fmt: skip
    return pa.schema([(name, types[kind]) for name, kind in _SCHEMA_FIELDS])


@dataclass
class _Unit:
    """A slice of one file's records, processed by one builder worker into one Arrow file."""

    job: int  # position in the build's job list
    file: str
    root: str
    out: str  # the Arrow file to write
    first_record: int
    starts: np.ndarray
    ends: np.ndarray
    linenos: np.ndarray


@dataclass
class _UnitResult:
    job: int
    out: str | None  # None: no usable record
    records: int
    rows: int
    truncated: int
    errors: list[dict[str, Any]]
    worker: tuple[int, float] = (0, 0.0)  # (pid, CPU seconds of that process so far) of a pool worker


_WORKER_SETTINGS: IndexSettings | None = None  # set in builder processes by _init_worker
_WORKER_NAMES: NearbyNames | None = None  # a builder process's folder listings, for missing files' suggestions


def _init_worker(settings: IndexSettings) -> None:
    global _WORKER_SETTINGS, _WORKER_NAMES
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # parallel across processes, not threads
    _WORKER_SETTINGS, _WORKER_NAMES = settings, NearbyNames()


def _run_unit(unit: _Unit) -> _UnitResult:
    result = _process_unit(unit, _WORKER_SETTINGS, _WORKER_NAMES)
    result.worker = (os.getpid(), time.process_time())  # its start-up included: the cost of a pool worker
    return result


def _read_unit(unit: _Unit, settings: IndexSettings, names: NearbyNames) -> tuple[list[Any], list[dict[str, Any]]]:
    """(good samples with their byte spans, errors) of a unit's records: parsed and checked, not tokenised."""
    base = int(unit.starts[0])
    with open(unit.file, "rb") as f:
        f.seek(base)
        data = f.read(int(unit.ends[-1]) - base)
    good, errors = [], []
    stat_cache: dict[str, Any] = {}
    for k in range(len(unit.starts)):
        index, line = unit.first_record + k, int(unit.linenos[k])
        raw = data[int(unit.starts[k]) - base : int(unit.ends[k]) - base]
        try:
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ValueError(f"{unit.file}: line {line} is not UTF-8 text ({e}); save the file as UTF-8") from e
            try:
                record = json.loads(text)
            except json.JSONDecodeError as e:
                raise RecordError(unit.file, index, None, json_error_reason(e), "json", line) from e
            sample = parse_record(record, index, unit.file, unit.root, line)
            check_num_frames(sample, settings.num_queries, unit.file)
            if settings.check_files:
                _check_files_cached(sample, unit.file, stat_cache, names)
        except RecordError as error:
            errors.append(error.as_dict())
            continue
        good.append((sample, int(unit.starts[k]), len(raw)))
    return good, errors


def _check_files_cached(sample: Any, source: str, cache: dict[str, Any], names: NearbyNames) -> None:
    """``check_media_path``, remembering the outcome per path within a unit (QA data repeats its media)."""
    key = "\0".join(f"{item.kind}:{item.path}" for item in sample.media) + f"\0{sample.subtitles}"
    if key not in cache:
        try:
            check_media_path(sample, source, names)
            cache[key] = None
        except RecordError as error:
            cache[key] = (error.reason, error.category, error.fix, error.path)
    if cache[key] is not None:
        reason, category, fix, path = cache[key]
        raise RecordError(source, sample.index, sample.record_id, reason, category, sample.line, fix, path)


def _process_unit(unit: _Unit, settings: IndexSettings, names: NearbyNames) -> _UnitResult:
    """Check and tokenise one unit's records and write the usable ones as one Arrow batch."""
    import pyarrow as pa

    good, errors = _read_unit(unit, settings, names)
    tokens = tokenize_samples([g[0] for g in good], settings.tokenizer, settings.template, settings.max_length,
                              settings.num_queries, unit.file)  # fmt: skip
    ids, ids_off, spans, spans_off = [], [0], [], [0]
    kinds, paths, frames, media_off = [], [], [], [0]
    scalars: dict[str, list[Any]] = {name: [] for name in ("record_index", "line", "byte_offset", "byte_length", "id",
                                                            "task", "num_tokens", "length", "answer_tokens",
                                                            "truncated", "num_media")}  # fmt: skip
    for (sample, offset, length), result in zip(good, tokens):
        if isinstance(result, RecordError):
            errors.append(result.as_dict())
            continue
        n_media = len(sample.media)
        ids += result["input_ids"]
        ids_off.append(len(ids))
        for start, end in result["spans"]:
            spans += (start, end)
        spans_off.append(len(spans))
        for item in sample.media:
            kinds.append(item.kind)
            paths.append(str(item.path))
            frames.append(item.num_frames or 0)
        media_off.append(len(kinds))
        scalars["record_index"].append(sample.index)
        scalars["line"].append(sample.line)
        scalars["byte_offset"].append(offset)
        scalars["byte_length"].append(length)
        scalars["id"].append(None if sample.record_id is None else json.dumps(sample.record_id))
        scalars["task"].append(sample.task)
        scalars["num_tokens"].append(result["num_tokens"])
        scalars["length"].append(len(result["input_ids"]) + n_media * (settings.num_queries - 1))
        scalars["answer_tokens"].append(result["kept_answer_tokens"])
        scalars["truncated"].append(result["truncated"])
        scalars["num_media"].append(n_media)
    errors.sort(key=lambda e: e["index"])  # parse and length errors back in file order
    rows = len(scalars["record_index"])
    if not rows:
        return _UnitResult(unit.job, None, len(unit.starts), 0, 0, errors)

    def lists(offsets: list[int], values: list[Any], kind: Any) -> Any:
        return pa.ListArray.from_arrays(pa.array(np.asarray(offsets, dtype=np.int32)), pa.array(values, type=kind))

    schema = _schema()
    columns = {
        "input_ids": lists(ids_off, np.asarray(ids, dtype=np.int32), pa.int32()),
        "label_spans": lists(spans_off, np.asarray(spans, dtype=np.int32), pa.int32()),
        "media_kind": lists(media_off, kinds, pa.string()),
        "media_path": lists(media_off, paths, pa.string()),
        "media_num_frames": lists(media_off, np.asarray(frames, dtype=np.int32), pa.int32()),
        **{name: pa.array(values, type=schema.field(name).type) for name, values in scalars.items()},
    }
    batch = pa.record_batch([columns[name] for name in schema.names], schema=schema)
    with pa.OSFile(unit.out, "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        writer.write_batch(batch)
    return _UnitResult(unit.job, unit.out, len(unit.starts), rows, sum(scalars["truncated"]), errors)


def _fsync_tree(folder: Path) -> None:
    """Flush every file of ``folder`` and the folder entries to disk before the rename publishes them."""
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
    for directory in [*sorted(p for p in folder.rglob("*") if p.is_dir()), folder]:
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _temp_name(path: Path) -> Path:
    return path.parent / f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _remove_stale_temps(path: Path) -> None:
    """Temporary folders of ``path`` left by killed builders (the caller holds the lock: no build is running)."""
    for stale in path.parent.glob(f".{path.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)


def _units(jobs: Sequence[IndexJob], spans: Sequence[RecordSpans], temps: Sequence[Path], workers: int) -> list[_Unit]:
    units = []
    for j, (job, span) in enumerate(zip(jobs, spans)):
        n = len(span)
        size = max(1, min(UNIT_RECORDS, -(-n // max(1, workers))))  # small files still use every worker
        for u, first in enumerate(range(0, n, size)):
            cut = slice(first, first + size)
            units.append(_Unit(j, job.file, job.root, str(temps[j] / f"unit-{u:06d}.arrow"), first,
                               span.starts[cut], span.ends[cut], span.linenos[cut]))
    return units


def _map_units(units: list[_Unit], settings: IndexSettings, workers: int) -> Iterator[_UnitResult]:
    """Process units in order: in this process (``workers <= 1``) or in a pool of worker processes."""
    if workers <= 1 or len(units) <= 1:
        names = NearbyNames()  # one listing per folder for the whole build
        for unit in units:
            yield _process_unit(unit, settings, names)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # fork, as DataLoader workers and datasets.map(num_proc) start: no re-import of the main module (which a
    # script without a __main__ guard would run again, waiting for the lock this process holds) and no pickled
    # tokenizer. The workers use no thread pool the parent may hold (the Rust tokenizers turn theirs off in a
    # forked child; torch is not used).
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    pool = ProcessPoolExecutor(max_workers=min(workers, len(units)), mp_context=multiprocessing.get_context(method),
                               initializer=_init_worker, initargs=(settings,))  # fmt: skip
    try:
        yield from pool.map(_run_unit, units)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # on an error, queued units are dropped


def _write_index(job: IndexJob, temp: Path, results: list[_UnitResult], seconds: float,
                 cpu_seconds: tuple[float, list[float]]) -> None:
    """Assemble a job's unit files into ``temp`` (``data/``, ``errors.json``, ``meta.json``), then publish it."""
    import datasets

    shards = [r.out for r in results if r.out is not None]
    rows = sum(r.rows for r in results)
    if shards:
        enabled = datasets.is_progress_bar_enabled()
        datasets.disable_progress_bars()
        try:
            parts = [datasets.Dataset.from_file(shard, in_memory=False) for shard in shards]
            datasets.concatenate_datasets(parts).save_to_disk(str(temp / "data"))
            del parts
        finally:
            if enabled:
                datasets.enable_progress_bars()
        for shard in shards:
            os.remove(shard)
    errors = [e for r in results for e in r.errors]
    (temp / "errors.json").write_text(json.dumps(errors, default=str))
    meta = {
        "format": INDEX_FORMAT,
        "key": job.path.name,
        "fields": job.fields,
        "source": job.file,
        "num_records": sum(r.records for r in results),
        "num_rows": rows,
        "num_errors": len(errors),
        "num_truncated": sum(r.truncated for r in results),
        "build_seconds": round(seconds, 3),
        # CPU of the whole build so far: this process, and each pool worker (start-up included)
        "build_cpu_seconds": round(cpu_seconds[0] + sum(cpu_seconds[1]), 3),
        "build_worker_cpu_seconds": [round(t, 3) for t in cpu_seconds[1]],
        "built_by": {"pid": os.getpid(), "host": os.uname().nodename, "time": time.strftime("%Y-%m-%dT%H:%M:%S")},
    }
    (temp / "meta.json").write_text(json.dumps(meta, indent=1, default=str))
    _fsync_tree(temp)
    try:
        os.rename(temp, job.path)  # atomic: the folder appears complete, or not at all
    except OSError:
        if not _complete(job.path):
            raise
        shutil.rmtree(temp, ignore_errors=True)  # another builder (without a working lock) was first


def build_indexes(jobs: Sequence[IndexJob], settings: IndexSettings, workers: int = 1, progress: bool = True) -> None:
    """Check and tokenise the records of ``jobs``' files into their index folders (see the module docstring).

    The caller holds the jobs' locks. Workers: processes that check and tokenise (1: this process).

    Raises:
        ValueError: a file that cannot be read at all (invalid ``.json`` list, text that is not UTF-8).
    """
    from tqdm import tqdm

    start, cpu_start = time.perf_counter(), time.process_time()
    spans = [scan_records(job.file, settings.max_records) for job in jobs]
    total = sum(len(s) for s in spans)
    workers = workers if total >= POOL_MIN_RECORDS else 1
    _log(f"building the data index of {len(jobs)} file(s), {total} records, with {workers} process(es): "
         + ", ".join(str(job.path) for job in jobs))  # fmt: skip
    temps = []
    for job in jobs:
        _remove_stale_temps(job.path)
        temp = _temp_name(job.path)
        temp.mkdir(parents=True)
        temps.append(temp)
    try:
        units = _units(jobs, spans, temps, workers)
        results: list[list[_UnitResult]] = [[] for _ in jobs]
        remaining = [sum(1 for u in units if u.job == j) for j in range(len(jobs))]
        names = ", ".join(Path(job.file).name for job in jobs[:3]) + (" ..." if len(jobs) > 3 else "")
        workers_cpu: dict[int, float] = {}

        def cpu_seconds() -> tuple[float, list[float]]:
            return time.process_time() - cpu_start, sorted(workers_cpu.values())

        with tqdm(total=total, desc=f"indexing {names}", unit="rec", disable=not progress,
                  mininterval=2, file=sys.stderr) as bar:  # fmt: skip
            for result in _map_units(units, settings, workers):
                results[result.job].append(result)
                if result.worker[0]:
                    workers_cpu[result.worker[0]] = max(workers_cpu.get(result.worker[0], 0.0), result.worker[1])
                bar.update(result.records)
                remaining[result.job] -= 1
                if not remaining[result.job]:  # publish each file's index as soon as it is complete
                    _write_index(jobs[result.job], temps[result.job], results[result.job],
                                 time.perf_counter() - start, cpu_seconds())  # fmt: skip
        for j, job in enumerate(jobs):
            if not spans[j] and not _complete(job.path):
                _write_index(job, temps[j], [], time.perf_counter() - start, (time.process_time() - cpu_start, []))
    finally:
        for temp in temps:
            shutil.rmtree(temp, ignore_errors=True)  # a failed build leaves nothing behind


def _waiting_rank() -> bool:
    """True in a distributed run's processes other than a node's local rank 0: they wait for its index."""
    local_rank = os.environ.get("LOCAL_RANK")
    return local_rank is not None and local_rank != "0" and int(os.environ.get("WORLD_SIZE", "1")) > 1


def _wait_for(jobs: Sequence[IndexJob], poll: float = 1.0) -> None:
    start, last = time.monotonic(), time.monotonic()
    for job in jobs:
        while not _complete(job.path):
            if time.monotonic() - last > 60:
                last = time.monotonic()
                _log(f"waiting {time.monotonic() - start:.0f} s for local rank 0 to build the data index "
                     f"{job.path} (its progress bar shows how far it is)")  # fmt: skip
            time.sleep(poll)


def ensure_indexes(
    jobs: Sequence[IndexJob], settings: IndexSettings, workers: int = 1, progress: bool = True
) -> list[TokenIndex]:
    """Open the index of every job, building the missing ones first (once: see the module docstring).

    An index that found files missing or empty which are there now (:func:`fixed_files`) is replaced by one whose
    key also holds those files: built once, then opened by every later run while the files stay as they are.
    Each start reads the ``errors.json`` of every index and stats the files of its file errors.

    Returns:
        The opened indexes, in the order of ``jobs``.
    """
    indexes = _ensure(jobs, settings, workers, progress)
    again = {}
    for k, (job, index) in enumerate(zip(jobs, indexes)):
        fixed = fixed_files(index)
        if fixed:
            again[k] = _job(job.file, job.root, {**job.fields, "fixed_files": fixed}, job.path.parent)
    if again:
        _log(f"{len(again)} data index(es) found files missing or empty that are there now: checking their records "
             "again")  # fmt: skip
        for k, index in zip(again, _ensure(list(again.values()), settings, workers, progress)):
            indexes[k] = index
    return indexes


def _ensure(jobs: Sequence[IndexJob], settings: IndexSettings, workers: int, progress: bool) -> list[TokenIndex]:
    missing = list({job.path: job for job in jobs if not _complete(job.path)}.values())  # a file may recur
    if missing and _waiting_rank():
        _wait_for(missing)
    elif missing:
        from filelock import FileLock, Timeout

        missing = sorted(missing, key=lambda job: str(job.path))  # one lock order: no deadlock between builders
        with contextlib.ExitStack() as stack:
            for job in missing:
                job.path.parent.mkdir(parents=True, exist_ok=True)
                lock = FileLock(str(job.path.parent / f"{job.path.name}.lock"))
                try:
                    lock.acquire(timeout=0)
                except Timeout:
                    _log(f"another process is building the data index {job.path}; waiting for it")
                    lock.acquire()
                stack.callback(lock.release)
            todo = [job for job in missing if not _complete(job.path)]
            if todo:
                build_indexes(todo, settings, workers, progress)
    return [TokenIndex(job.path) for job in jobs]


# ----------------------------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------------------------
class _Column:
    """One column of a memory-mapped table as per-chunk numpy views (or Arrow arrays for strings)."""

    def __init__(self, chunked: Any) -> None:
        import pyarrow as pa

        chunks = chunked.chunks
        self.starts = [0]
        for chunk in chunks:
            self.starts.append(self.starts[-1] + len(chunk))
        self.is_list = pa.types.is_list(chunked.type)
        value_type = chunked.type.value_type if self.is_list else chunked.type
        self.numeric = pa.types.is_integer(value_type) or pa.types.is_boolean(value_type)
        if self.is_list:
            self.offsets = [chunk.offsets.to_numpy() for chunk in chunks]
            self.values = [chunk.values.to_numpy(zero_copy_only=True) if self.numeric else chunk.values
                           for chunk in chunks]  # fmt: skip
        else:
            self.values = [chunk.to_numpy(zero_copy_only=pa.types.is_integer(value_type)) if self.numeric else chunk
                           for chunk in chunks]  # fmt: skip

    def get(self, i: int) -> Any:
        c = bisect.bisect_right(self.starts, i) - 1
        local = i - self.starts[c]
        if not self.is_list:
            value = self.values[c][local]
            return value.as_py() if not self.numeric else value
        a, b = self.offsets[c][local], self.offsets[c][local + 1]
        if self.numeric:
            return self.values[c][a:b]
        return self.values[c].slice(a, b - a).to_pylist()


class TokenIndex:
    """A built index, opened memory-mapped (see the module docstring for its columns).

    Pickles as its path (a DataLoader worker started with ``spawn`` maps the files again); forked workers
    share the mapping. Opening costs a few milliseconds and no memory per record.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._open()

    def _open(self) -> None:
        self.meta = json.loads((self.path / "meta.json").read_text())
        self.table = None
        self._columns: dict[str, _Column] = {}
        if (self.path / "data").is_dir():
            import datasets

            self.table = datasets.load_from_disk(str(self.path / "data"), keep_in_memory=False)

    def __getstate__(self) -> dict[str, Any]:
        return {"path": str(self.path)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path = Path(state["path"])
        self._open()

    def __len__(self) -> int:
        return int(self.meta["num_rows"])

    @property
    def source(self) -> str:
        return str(self.meta["source"])

    @property
    def root(self) -> str:
        return str(self.meta["fields"]["root"])

    def errors(self) -> list[dict[str, Any]]:
        """The records that cannot be used (``RecordError.as_dict()``), in file order (read from disk)."""
        return json.loads((self.path / "errors.json").read_text())

    def column(self, name: str) -> np.ndarray:
        """A scalar column as one numpy array in memory (4-8 bytes per record)."""
        if self.table is None:
            return np.zeros(0, dtype=np.int64)
        return self.table.data.column(name).to_numpy()

    def _column(self, name: str) -> _Column:
        if name not in self._columns:
            self._columns[name] = _Column(self.table.data.column(name))
        return self._columns[name]

    def row(self, i: int) -> dict[str, Any]:
        """Row ``i``: numpy views (ids, spans, frame counts) and Python values, built now, kept by no one."""
        values = {name: self._column(name).get(i) for name in _ROW_COLUMNS}
        for name in ("record_index", "line", "byte_offset", "byte_length"):
            values[name] = int(values[name])
        values["id"] = None if values["id"] is None else json.loads(values["id"])
        return values
