"""The resumable prediction store: model replies on disk, one JSON line each, written as soon as they exist."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["PredictionStore"]


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
