"""Data sources and mixtures: which data files a dataset reads, and how much of each.

A training set is one source or a mixture of several (a config's ``data_sources``), each with its own data
files (paths or glob patterns of ``.jsonl`` / ``.json`` shards, in sorted order), media root, ``on_error`` and
an amount (data/README.md, "Mixtures"):

* ``repeat`` (a float, default 1): 2 takes every usable record twice, 0.5 a deterministic half, 1.5 every
  record once plus a deterministic half;
* ``num_samples`` (an int): exactly that many records: a subset without replacement when below the source's
  usable records, whole copies plus a subset above it (ms-swift's ``dataset#N``).

The subsets are drawn with a generator seeded by the mixture seed and the source's file names, never by the run's
random state, so every run and every rank takes the same records (LLaVA-NeXT's unseeded ``random:N`` is the
trap this avoids); taken records keep their file order. Selection is a numpy array of row numbers: memory grows
by 8 bytes per taken record, time linearly.
"""

from __future__ import annotations

import glob
import hashlib
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DataSource", "select_rows"]

ON_ERROR = ("raise", "skip")
_SOURCE_KEYS = frozenset({"data_path", "data_root", "on_error", "repeat", "num_samples", "name"})


@dataclass(frozen=True)
class DataSource:
    """One source of a dataset.

    Args:
        data_path: A data file, a glob pattern (``data/part-*.jsonl``), or a list of them.
        data_root: Folder media paths are relative to (default: each data file's own folder).
        on_error: ``raise`` or ``skip`` (data/README.md, "Bad input during training").
        repeat: Amount as a multiple of the usable records (default 1 when ``num_samples`` is not given).
        num_samples: Amount as a number of records.
        name: A label for logs (default: the first pattern).
    """

    data_path: tuple[str, ...]
    data_root: str | None = None
    on_error: str = "raise"
    repeat: float | None = None
    num_samples: int | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        where = f"data source {self.label!r}"
        if not self.data_path or not all(isinstance(p, str) and p for p in self.data_path):
            raise ValueError(f"{where}: data_path must be a path or glob pattern, or a list of them")
        if self.on_error not in ON_ERROR:
            raise ValueError(f"{where}: on_error must be one of {ON_ERROR}, got {self.on_error!r}")
        if self.repeat is not None and self.num_samples is not None:
            raise ValueError(f"{where}: give repeat or num_samples, not both")
        if self.repeat is not None and (not isinstance(self.repeat, (int, float)) or isinstance(self.repeat, bool)
                                        or not math.isfinite(self.repeat) or self.repeat <= 0):  # fmt: skip
            raise ValueError(f"{where}: repeat must be a number > 0, got {self.repeat!r}")
        if self.num_samples is not None and (not isinstance(self.num_samples, int) or isinstance(self.num_samples, bool)
                                             or self.num_samples < 1):  # fmt: skip
            raise ValueError(f"{where}: num_samples must be an integer >= 1, got {self.num_samples!r}")

    @property
    def label(self) -> str:
        return self.name or (self.data_path[0] if self.data_path else "?")

    @classmethod
    def from_config(cls, spec: Any, on_error: str = "raise") -> DataSource:
        """A source from a config dict (``dict(data_path=..., data_root=..., repeat=...)``) or a ``DataSource``.

        Raises:
            ValueError: unknown keys or bad values, naming the source.
        """
        if isinstance(spec, DataSource):
            return spec
        if not isinstance(spec, Mapping):
            raise ValueError(f"a data source must be a dict with data_path (and data_root, on_error, repeat or "
                             f"num_samples), got {spec!r}")  # fmt: skip
        unknown = sorted(set(spec) - _SOURCE_KEYS)
        if unknown:
            raise ValueError(f"data source {spec.get('data_path')!r}: unknown keys {unknown}; allowed: "
                             f"{sorted(_SOURCE_KEYS)}")  # fmt: skip
        paths = spec.get("data_path")
        paths = (paths,) if isinstance(paths, (str, os.PathLike)) else tuple(paths or ())
        return cls(
            data_path=tuple(str(p) for p in paths),
            data_root=None if spec.get("data_root") is None else str(spec["data_root"]),
            on_error=spec.get("on_error", on_error),
            repeat=spec.get("repeat"),
            num_samples=spec.get("num_samples"),
            name=spec.get("name"),
        )

    def files(self) -> list[str]:
        """The data files, in order: each pattern's matches sorted, patterns in the given order, no repeats.

        Raises:
            FileNotFoundError: a path that does not exist or a pattern that matches nothing.
        """
        files: list[str] = []
        for pattern in self.data_path:
            if glob.has_magic(pattern):
                matches = sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
                if not matches:
                    raise FileNotFoundError(f"data file not found: the pattern {pattern} matches no file")
            else:
                if not os.path.isfile(pattern):
                    raise FileNotFoundError(f"data file not found: {pattern}")
                matches = [pattern]
            files += [m for m in matches if m not in files]
        return files

    def root_of(self, file: str) -> str:
        """The media root of one of this source's files (``data_root``, else the file's folder), absolute."""
        return os.path.abspath(self.data_root if self.data_root is not None else Path(file).parent)

    def seed(self, mixture_seed: int) -> list[int]:
        """The subset generator's seed: the mixture seed and a hash of the source's patterns."""
        digest = hashlib.sha256("\0".join(self.data_path).encode()).digest()
        return [int(mixture_seed), int.from_bytes(digest[:8], "little")]

    def amount(self, usable: int) -> int:
        """Records this source contributes when it has ``usable`` usable records."""
        if self.num_samples is not None:
            return self.num_samples if usable else 0
        return math.floor((1.0 if self.repeat is None else self.repeat) * usable + 0.5)


def select_rows(usable: int, amount: int, seed: Sequence[int]) -> np.ndarray:
    """Row numbers taking ``amount`` of ``usable`` records: whole copies, then a seeded subset without replacement.

    Returns:
        An int64 array of length ``amount``; each copy and the subset in row order.
    """
    if usable == 0 or amount == 0:
        return np.zeros(0, dtype=np.int64)
    copies, rest = divmod(amount, usable)
    parts = [np.arange(usable, dtype=np.int64)] * copies
    if rest:
        generator = np.random.Generator(np.random.PCG64(list(seed)))
        parts.append(np.sort(generator.permutation(usable)[:rest]).astype(np.int64))
    return np.concatenate(parts)
