"""Prediction files: model replies on disk, one JSON line each, written as soon as they exist.

Files of one frame count ``N`` under ``OUT/<benchmark>/``:

* ``predictions_fN.jsonl``: the merged predictions (every question of the run, in benchmark order); a
  one-process run also appends to it while it answers;
* ``predictions_fN.rankR.jsonl``: the shard of rank ``R`` while several processes answer; merged into
  ``predictions_fN.jsonl`` and deleted once every question has a reply.

Every record carries its frame count and, when the caller names one, the identity of its run (``run``: model and
data); reading a file checks both, so predictions of another model or frame count are never mixed in.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["PredictionStore", "prediction_files", "read_predictions", "shard_path", "write_predictions"]

Key = tuple[str, str]  # (variant, uid)


def shard_path(bench_dir: str | os.PathLike, num_frames: int, rank: int | None = None) -> Path:
    """``predictions_f{N}.jsonl`` (``rank`` None) or the shard ``predictions_f{N}.rank{R}.jsonl``."""
    suffix = "" if rank is None else f".rank{rank}"
    return Path(bench_dir) / f"predictions_f{num_frames}{suffix}.jsonl"


def prediction_files(bench_dir: str | os.PathLike, num_frames: int) -> list[Path]:
    """The prediction files of a frame count that exist: the merged file first, then the shards by rank."""
    merged = shard_path(bench_dir, num_frames)
    pattern = re.compile(rf"predictions_f{num_frames}\.rank(\d+)\.jsonl")
    shards = [(int(m.group(1)), p) for p in Path(bench_dir).glob(f"predictions_f{num_frames}.rank*.jsonl")
              if (m := pattern.fullmatch(p.name))]  # fmt: skip
    return ([merged] if merged.exists() else []) + [p for _, p in sorted(shards)]


def _run_diff(seen: Mapping[str, Any], expected: Mapping[str, Any]) -> str:
    keys = sorted(set(seen) | set(expected))
    return "; ".join(f"{k}: {seen.get(k)!r} there, {expected.get(k)!r} in this run" for k in keys
                     if seen.get(k) != expected.get(k))  # fmt: skip


def read_predictions(
    path: str | os.PathLike, num_frames: int, run: Mapping[str, Any] | None = None, repair: bool = False
) -> dict[Key, dict[str, Any]]:
    """The records of a prediction file, keyed by ``(variant, uid)`` (a later line replaces an earlier one).

    A partly written last line (its process died mid-write) is ignored; with ``repair`` it is also cut off the
    file (only the file's own writer may do that). Time and memory grow linearly with the file.

    Args:
        path: The ``.jsonl`` file.
        num_frames: Frame count every record must have.
        run: Identity of this run (e.g. ``{"model": ..., "data": ...}``); a record carrying another identity is
            refused. Records without one (written by the library without a ``run``) are accepted.
        repair: Truncate a partial last line.

    Raises:
        ValueError: If a record is malformed, or belongs to another frame count or run (the message names the
            file, the line and the difference).
    """
    path = Path(path)
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        data = data[: data.rfind(b"\n") + 1]
        if repair:
            with open(path, "r+b") as f:
                f.truncate(len(data))
    records: dict[Key, dict[str, Any]] = {}
    for lineno, line in enumerate(data.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            key = (rec["variant"], rec["uid"])
            nf = rec["num_frames"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(f"{path}:{lineno}: malformed prediction record ({e}): {line[:200]!r}") from e
        if nf != num_frames:
            raise ValueError(f"{path}:{lineno}: record for {nf} frames in the store of {num_frames} frames; the file "
                             "belongs to another run: move it out of this folder")  # fmt: skip
        if run is not None and rec.get("run") is not None and rec["run"] != dict(run):
            raise ValueError(f"{path}:{lineno}: a prediction of another run ({_run_diff(rec['run'], run)}); "
                             "move the file out of this folder, or use a new --out folder")  # fmt: skip
        records[key] = rec
    return records


def write_predictions(path: str | os.PathLike, records: Iterable[Mapping[str, Any]]) -> None:
    """Write a whole prediction file atomically (temporary file, fsync, rename): a crash leaves the old file or
    the new one, never half of one."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class PredictionStore:
    """Append-only JSON-lines file of model replies, keyed by ``(variant, uid)``.

    One store holds one frame count (the file name carries it; every record repeats it and loading checks it).
    Each batch of records is written with one ``write`` and flushed to disk (``fsync``) as soon as its replies
    exist, so killing the process loses at most the batch being generated. A partly written last line (the
    process died mid-write) is cut off when the store is reopened. Memory grows linearly with the records.

    Args:
        path: The ``.jsonl`` file (created with its parent folder if missing).
        num_frames: Frame count of this store's records.
        run: Identity of the run, stamped on every new record and checked on the loaded ones.

    Raises:
        ValueError: If an existing record is malformed or belongs to another frame count or run.
    """

    def __init__(self, path: str | os.PathLike, num_frames: int, run: Mapping[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.num_frames = num_frames
        self.run = dict(run) if run is not None else None
        self.records: dict[Key, dict[str, Any]] = {}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            self.records = read_predictions(self.path, num_frames, self.run, repair=True)

    def __contains__(self, key: Key) -> bool:
        return key in self.records

    def __len__(self) -> int:
        return len(self.records)

    def get(self, variant: str, uid: str) -> dict[str, Any] | None:
        """The record of a question, or None."""
        return self.records.get((variant, uid))

    def add_many(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Append records (each needs ``variant``, ``uid``) with one write, flush and fsync."""
        if not records:
            return
        lines = []
        for rec in records:
            rec = {**rec, "num_frames": self.num_frames}
            if self.run is not None:
                rec["run"] = self.run
            self.records[(rec["variant"], rec["uid"])] = rec
            lines.append(json.dumps(rec, ensure_ascii=False) + "\n")
        with open(self.path, "a", encoding="utf-8") as f:
            f.write("".join(lines))
            f.flush()
            os.fsync(f.fileno())
