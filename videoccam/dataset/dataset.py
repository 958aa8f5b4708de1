"""The training dataset: custom video QA records -> token ids, labels and frames.

Records are checked and tokenised **once** into an on-disk index per data file (:mod:`videoccam.dataset.index`:
built by one process with a pool of workers and a progress bar, keyed by everything that shapes it, opened
memory-mapped by every rank and DataLoader worker), so bad records are found before the first step and every
sample's LLM length is known exactly (text tokens + ``num_queries`` per media item), which feeds xtuner's
``LengthGroupedSampler`` through :attr:`VideoCCAMDataset.modality_length`. The dataset keeps no Python object
per record: a few numpy arrays (lengths, answer-token counts, the rows of a mixture) and the mapped index;
``__getitem__`` builds one sample's ids, labels and frames when asked. A dataset reads one data file or a
mixture of sources (:mod:`videoccam.dataset.sources`); a record may hold several images and videos.

Bad input never silently becomes another sample. With ``on_error="raise"`` (default) the first bad record
stops training with its file, line, index, id, reason and fix, and a last line saying how to list every bad
record (``tools/validate_data.py``) or skip them (``on_error="skip"``). With ``on_error="skip"`` the record is
dropped deterministically: construction-time problems (malformed JSONL line, schema, placeholders, missing or empty
media, missing subtitles, length) leave it out, and load-time problems (a video that exists but cannot be
decoded) make ``__getitem__`` return a ``{"skipped": ...}`` marker that the collate function moves to
``data["skipped"]`` of the batch (so it crosses DataLoader worker processes with the batch);
:class:`videoccam.engine.SkippedSamplesHook` logs both kinds and writes ``skipped_samples.json`` to the work dir,
each entry naming its data file.

Construction checks everything that needs no decoding, so ``raise`` stops before the first step on every such
problem, in file order; ``tools/validate_data.py`` also decodes every sample, with the same checks.

Frames are decoded straight to numpy and resized with PIL (the image processor's own resize, so training sees
the pixels ``chat()`` and evaluation see) when the image processor allows it (SigLIP's does); items then hold
the resized uint8 frames and the rescale / normalisation (``pixel_affine``) that the model applies on its device
(``normalize_in_model``; or per clip in torch here, :mod:`.frame_processing`). Other processors are called as
they are (``tools/bench_dataloader.py`` measures these paths against raw decord).
"""

from __future__ import annotations

import bisect
import dataclasses
import json
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mmengine.logging import print_log
from torch.utils.data import Dataset

from videoccam.config import build_from_cfg, resolve_template
from videoccam.dataset.feature_cache import VisionFeatureCache
from videoccam.dataset.frame_processing import BatchFrameProcessor
from videoccam.dataset.index import (
    IndexSettings,
    TokenIndex,
    default_index_dir,
    ensure_indexes,
    index_job,
)
from videoccam.dataset.records import (
    MediaItem,
    RecordError,
    Sample,
    media_error_category,
    parse_record,
)
from videoccam.dataset.sources import ON_ERROR, DataSource, select_rows
from videoccam.dataset.tokenize import labels_from_spans, tokenize_sample
from videoccam.dataset.video_io import SAMPLINGS, FrameSampling, MediaLoadError

__all__ = ["ON_ERROR", "VideoCCAMDataset", "tokenize_sample"]

_LOGGED_SKIPS = 20  # skipped records logged one by one per source; the rest are counted (all go to the json)


def _check_arguments(
    on_error: str, sampling: str, num_frames: int, max_frames: int | None, num_queries: int
) -> int:
    """Validate the dataset's sampling and error arguments; returns ``max_frames`` (default ``num_queries``).

    Raises:
        ValueError: naming the argument and the allowed values.
    """
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
    if num_frames < 1 or num_frames > num_queries:
        raise ValueError(f"num_frames must be in [1, num_queries={num_queries}], got {num_frames}")
    max_frames = max_frames if max_frames is not None else num_queries
    if max_frames > num_queries:
        raise ValueError(f"max_frames={max_frames} must be <= num_queries={num_queries}")
    return max_frames


def _sources(data_path: Any, data_root: Any, data_sources: Any, on_error: str) -> list[DataSource]:
    if data_sources is not None and (data_path is not None or data_root is not None):
        raise ValueError(
            "give data_path / data_root (one data file) or data_sources (a mixture, each source with its own "
            "data_root), not both; with data_sources set data_path=None and data_root=None (the stage-2 recipes "
            "do so when their data_sources is not None)"
        )
    if data_sources is not None:
        if isinstance(data_sources, (str, Mapping)) or not data_sources:
            raise ValueError(f"data_sources must be a non-empty list of dicts, got {data_sources!r}")
        return [DataSource.from_config(spec, on_error) for spec in data_sources]
    if data_path is None:
        raise ValueError("no data: set data_path (a data file) or data_sources (a list of sources)")
    return [DataSource.from_config({"data_path": data_path, "data_root": data_root, "on_error": on_error})]


class VideoCCAMDataset(Dataset):
    """Map-style dataset over one data file or a mixture of sources (data/README.md).

    Args:
        data_path: ``.json`` list or ``.jsonl`` file (or a glob pattern of shards); None with ``data_sources``.
        tokenizer: tokenizer or builder dict.
        image_processor: image processor or builder dict (SigLIP's).
        template: an xtuner ``PROMPT_TEMPLATE`` entry (e.g. ``PROMPT_TEMPLATE.qwen_chat``).
        num_queries: visual tokens per media item (the projector's ``num_queries``).
        max_length: LLM context per sample, visual tokens included (every media item counts).
        data_root: folder that media paths in the records are relative to (default: the data file's folder).
        num_frames: frames per video for ``uniform`` sampling (a record's ``num_frames`` overrides it).
        sampling: ``uniform`` (segment midpoints) or ``fps`` (``target_fps``, at most ``max_frames``; a
            record's ``num_frames`` overrides ``max_frames``).
        target_fps: sampling rate for ``fps``.
        max_frames: frame cap for ``fps`` sampling (default: ``num_queries``).
        decode_threads: decoder threads per video (0 = the decoder's default).
        on_error: ``raise`` or ``skip`` (see the module docstring); the default of every source.
        max_dataset_length: keep only the first N records of each data file (quick experiments).
        folder_fps: frame rate of frame folders (for ``fps`` sampling).
        video_backend: ``auto`` (decord, PyAV fallback), ``decord`` or ``pyav``.
        check_files: check while indexing that every media file / frame folder / subtitles file exists and
            is not empty (one ``stat`` per item; turn off only for very slow file systems).
        fast_image_processing: preprocess clips with :class:`BatchFrameProcessor` (PIL resize, batched torch
            normalisation; the same values as the processor) when the image processor's steps allow it;
            ``False`` always calls the image processor on PIL frames.
        normalize_in_model: with the batched preprocessing, items hold the resized **uint8** frames and their
            normalisation (``pixel_affine``, [2, 3]) instead of float32 ``pixel_values``; ``VideoCCAMModel``
            normalises them on its device to the same values. ``False`` gives float32 ``pixel_values``.
        feature_cache: a :class:`~videoccam.dataset.feature_cache.VisionFeatureCache`, its builder dict or a dict
            of its arguments (``enable_feature_cache`` sets one in a config): media items then hold their
            frozen vision tower's ``visual_features`` [t, p, c] from the cache instead of frames; stage 1 only.
        data_sources: a mixture: a list of ``dict(data_path=FILE_OR_GLOB_OR_LIST, data_root=..., on_error=...,
            repeat=FLOAT or num_samples=INT, name=...)`` (:class:`~videoccam.dataset.sources.DataSource`);
            replaces ``data_path`` / ``data_root``.
        mixture_seed: seed of the subsets that fractional amounts take (the same on every rank and run).
        index_dir: where the tokenised indexes live (default ``$VIDEOCCAM_INDEX_DIR`` or
            ``~/.cache/videoccam/index``).
        index_workers: processes that build a missing index (default: the usable CPUs, at most 16).
        progress: show a progress bar while building an index.
    """

    def __init__(
        self,
        data_path: str | None,
        tokenizer: Any,
        image_processor: Any,
        template: Any,
        num_queries: int,
        max_length: int,
        data_root: str | None = None,
        num_frames: int = 16,
        sampling: str = "uniform",
        target_fps: float | None = None,
        max_frames: int | None = None,
        decode_threads: int = 0,
        on_error: str = "raise",
        max_dataset_length: int | None = None,
        folder_fps: float = 1.0,
        video_backend: str = "auto",
        check_files: bool = True,
        fast_image_processing: bool = True,
        normalize_in_model: bool = True,
        feature_cache: Any = None,
        data_sources: Sequence[Mapping[str, Any]] | None = None,
        mixture_seed: int = 0,
        index_dir: str | None = None,
        index_workers: int | None = None,
        progress: bool = True,
    ) -> None:
        max_frames = _check_arguments(on_error, sampling, num_frames, max_frames, num_queries)
        self.sources = _sources(data_path, data_root, data_sources, on_error)
        files = [(s, source, file) for s, source in enumerate(self.sources) for file in source.files()]
        self.is_mixture = data_sources is not None
        self.source = str(data_path) if data_sources is None else f"mixture of {len(self.sources)} sources"
        self.data_root = Path(files[0][1].root_of(files[0][2]))  # of the first source: SampleAnswersHook's default
        self.tokenizer = build_from_cfg(tokenizer)
        self.image_processor = build_from_cfg(image_processor)
        self.template = resolve_template(template)  # a dumped config holds its import path
        self.num_queries = num_queries
        self.max_length = max_length
        self.num_frames = num_frames
        self.sampling = sampling
        self.target_fps = target_fps
        self.max_frames = max_frames
        self.decode_threads = decode_threads
        self.on_error = on_error
        self.frame_sampling = FrameSampling(
            num_frames=num_frames,
            sampling=sampling,
            target_fps=target_fps,
            max_frames=max_frames,
            num_threads=decode_threads,
            folder_fps=folder_fps,
            backend=video_backend,
        )  # validates the sampling arguments
        self.batch_processor = (
            BatchFrameProcessor.from_image_processor(self.image_processor) if fast_image_processing else None
        )
        self.normalize_in_model = normalize_in_model and self.batch_processor is not None
        if isinstance(feature_cache, Mapping) and "type" not in feature_cache:  # VisionFeatureCache's arguments
            feature_cache = VisionFeatureCache(**feature_cache)
        self.feature_cache = build_from_cfg(feature_cache)

        settings = IndexSettings(
            tokenizer=self.tokenizer, template=dict(self.template), num_queries=num_queries, max_length=max_length,
            check_files=check_files, max_records=max_dataset_length,
            frames={"num_frames": num_frames, "sampling": sampling, "target_fps": target_fps, "max_frames": max_frames},
        )  # fmt: skip
        self.index_dir = Path(index_dir).expanduser() if index_dir is not None else default_index_dir()
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        workers = index_workers if index_workers is not None else max(1, min(cpus, 16))
        jobs = [index_job(file, source.root_of(file), settings, self.index_dir) for _, source, file in files]
        self.indexes: list[TokenIndex] = ensure_indexes(jobs, settings, workers, progress)
        self._index_source = [s for s, _, _ in files]
        self.mixture_seed = mixture_seed
        self._select()

    # -- the rows of the dataset ----------------------------------------------------------------------------
    def _select(self) -> None:
        """Apply each source's ``on_error`` and amount: the dataset's rows and their per-row arrays.

        Memory: 8 bytes per usable record of the files (row offsets) and about 18 bytes per dataset row.
        """
        self._index_starts = [0]
        for index in self.indexes:
            self._index_starts.append(self._index_starts[-1] + len(index))
        rows, lengths, media, answers = [], [], [], []
        for s, source in enumerate(self.sources):
            mine = [k for k, owner in enumerate(self._index_source) if owner == s]
            errors = [e for k in mine for e in self.indexes[k].errors()]
            if errors and source.on_error == "raise":
                first = RecordError.from_dict(errors[0])
                root = next(self.indexes[k].root for k in mine if self.indexes[k].source == first.source)
                raise first.with_pointer(self._pointer(first.source, root))
            usable = sum(len(self.indexes[k]) for k in mine)
            records = sum(self.indexes[k].meta["num_records"] for k in mine)
            if not usable:
                raise ValueError(f"{source.label}: no usable record ({len(errors)} skipped)")
            chosen = select_rows(usable, source.amount(usable), source.seed(self.mixture_seed))
            # source-local row -> global row over all indexes (the source's files are consecutive)
            rows.append(chosen + self._index_starts[mine[0]])
            length = np.concatenate([self.indexes[k].column("length") for k in mine]).astype(np.int32)
            count = np.concatenate([self.indexes[k].column("num_media") for k in mine]).astype(np.int16)
            answer = np.concatenate([self.indexes[k].column("answer_tokens") for k in mine]).astype(np.int32)
            lengths.append(length[chosen])
            media.append(count[chosen])
            answers.append(answer[chosen])
            truncated = sum(self.indexes[k].meta["num_truncated"] for k in mine)
            self._log_source(source, mine, records, usable, errors, truncated, len(chosen))
        self._rows = np.concatenate(rows).astype(np.int64)
        self._length = np.concatenate(lengths)
        self._num_media = np.concatenate(media)
        self.answer_token_counts: np.ndarray = np.concatenate(answers)
        """Trained answer tokens per sample after truncation (1-D int32, indexed like the dataset)."""
        if len(self.sources) > 1:
            print_log(f"data mixture: {len(self)} samples from {len(self.sources)} sources", "current")

    def _pointer(self, file: str, root: str) -> str:
        """The last line of an error that stops training: how to list every bad record, and how to skip them."""
        check = f"python tools/validate_data.py {file}"
        if os.path.abspath(root) != os.path.abspath(Path(file).parent):
            check += f" --root {root}"
        skip = ("set on_error='skip' in its source's entry of data_sources" if self.is_mixture
                else "--cfg-options train_dataloader.dataset.on_error=skip")  # fmt: skip
        return (f"on_error='raise' stops at the first bad record. List them all: {check} (add --config CONFIG to "
                f"check lengths too); or skip bad records: {skip}")

    def _log_source(self, source: DataSource, mine: list[int], records: int, usable: int,
                    errors: list[dict[str, Any]], truncated: int, taken: int) -> None:  # fmt: skip
        files = len(mine)
        amount = f"num_samples={source.num_samples}" if source.num_samples is not None else \
            f"repeat={1.0 if source.repeat is None else source.repeat:g}"  # fmt: skip
        print_log(f"data source {source.label} ({files} file{'s' if files > 1 else ''}, index "
                  f"{self.indexes[mine[0]].path.parent}): {records} records, {usable} usable, {len(errors)} "
                  f"skipped, {truncated} truncated to max_length={self.max_length}; {amount}: {taken} samples",
                  "current")  # fmt: skip
        for entry in errors[:_LOGGED_SKIPS]:
            print_log(f"skipping {RecordError.from_dict(entry)}", "current", logging.WARNING)
        if errors:
            more = f" ({len(errors) - _LOGGED_SKIPS} not shown)" if len(errors) > _LOGGED_SKIPS else ""
            print_log(f"{len(errors)} of {records} records of {source.label} skipped (on_error='skip'){more}; "
                      "they will be listed in skipped_samples.json", "current", logging.WARNING)  # fmt: skip

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def modality_length(self) -> list[int]:
        """LLM length of each sample (text + ``num_queries`` per media item); negative for text-only.

        A list, as xtuner's ``LengthGroupedSampler`` asks; built from the arrays when read (~36 bytes a sample).
        """
        return np.where(self._num_media > 0, self._length, -self._length).tolist()

    @property
    def length(self) -> list[int]:
        return self._length.tolist()

    @property
    def num_media(self) -> np.ndarray:
        """Images and videos per sample (1-D int16, indexed like the dataset)."""
        return self._num_media

    @property
    def skipped(self) -> list[dict[str, Any]]:
        """The records left out while indexing (``on_error="skip"`` sources), each naming its data file."""
        return [e for k, index in enumerate(self.indexes) if self.sources[self._index_source[k]].on_error == "skip"
                for e in index.errors()]  # fmt: skip

    def _locate(self, i: int) -> tuple[int, int]:
        """(index number, row in that index) of dataset row ``i``."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"dataset index {i} out of range for {len(self)} samples")
        row = int(self._rows[i])
        k = bisect.bisect_right(self._index_starts, row) - 1
        return k, row - self._index_starts[k]

    def record(self, i: int) -> Any:
        """The JSON record of sample ``i``, read again from its data file."""
        k, row = self._locate(i)
        values = self.indexes[k].row(row)
        with open(self.indexes[k].source, "rb") as f:
            f.seek(values["byte_offset"])
            return json.loads(f.read(values["byte_length"]).decode("utf-8"))

    def sample(self, i: int) -> Sample:
        """Sample ``i`` parsed again from its record (media paths resolved against its root)."""
        k, row = self._locate(i)
        index = self.indexes[k]
        values = index.row(row)
        return parse_record(self.record(i), values["record_index"], index.source, index.root, values["line"])

    def single_media_rows(self, kind: str) -> Iterator[int]:
        """Rows whose sample holds exactly one ``kind`` item (``video`` or ``image``), in order."""
        for i in np.flatnonzero(self._num_media == 1):
            k, row = self._locate(int(i))
            if self.indexes[k].row(row)["media_kind"][0] == kind:
                yield int(i)

    # -- media -------------------------------------------------------------------------------------------
    def load_frames(self, sample: Sample, output: str = "pil") -> list[Any]:
        """Decode the frames of every media item of one sample (an image is one frame), with this dataset's
        sampling, concatenated in placeholder order.

        Raises:
            MediaLoadError: A media file cannot be read.
        """
        return [frame for item in sample.media
                for frame in self.frame_sampling.load(item.path, item.kind, item.num_frames, output=output).frames]

    def _load_clip(self, item: MediaItem, where: tuple[str, int, Any, int | None],
                   normalize: bool) -> tuple[torch.Tensor, list[int]]:  # fmt: skip
        """(preprocessed frames, their indices) of one item; uint8 frames when ``not normalize`` and the batched
        path runs. ``where`` is (data file, record index, record id, line) for error messages."""
        source, index, record_id, line = where
        try:
            output = "numpy" if self.batch_processor is not None else "pil"
            clip = self.frame_sampling.load(item.path, item.kind, item.num_frames, output=output)
        except MediaLoadError as e:
            raise RecordError(source, index, record_id, str(e), media_error_category(item.path), line) from e
        frames, indices = clip.frames, clip.indices
        if len(frames) > self.num_queries:
            raise RecordError(source, index, record_id, f"{item.path}: {len(frames)} frames > num_queries="
                              f"{self.num_queries}", "too_many_frames", line,
                              "lower num_frames / max_frames of the record or the dataset")  # fmt: skip
        if self.batch_processor is not None:
            resized = self.batch_processor.resize(frames)  # uint8
            return (self.batch_processor.normalize(resized) if normalize else resized), indices
        return self.image_processor(frames, return_tensors="pt")["pixel_values"], indices

    def load_pixel_values(self, sample: Sample, source: str | None = None) -> torch.Tensor:
        """Decoded and preprocessed frames of a sample's media, concatenated: ``[t, 3, H, W]`` float32, or
        resized uint8 frames when :attr:`normalize_in_model` (normalised by the model).

        Raises:
            RecordError: A media file cannot be read (``media_*`` categories), or gives more frames than
                ``num_queries`` (``too_many_frames``).
        """
        where = (source or self.source, sample.index, sample.record_id, sample.line)
        clips = [self._load_clip(item, where, normalize=not self.normalize_in_model)[0] for item in sample.media]
        return clips[0] if len(clips) == 1 else torch.cat(clips)

    def _preprocessing(self) -> dict[str, Any]:
        """The image processor's settings, part of a cached feature's key (read once)."""
        if getattr(self, "_preprocessing_settings", None) is None:
            to_dict = getattr(self.image_processor, "to_dict", None)
            settings = to_dict() if callable(to_dict) else vars(self.image_processor)
            self._preprocessing_settings = {"class": type(self.image_processor).__name__,
                                            **{k: v for k, v in settings.items() if k[0] != "_"}}  # fmt: skip
        return self._preprocessing_settings

    def load_visual_features(self, item: MediaItem, where: tuple[str, int, Any, int | None]) -> torch.Tensor:
        """One media item's frame features ``[t, p, c]`` from :attr:`feature_cache` (computed and stored on a miss).

        The key holds the frame indices the sampler takes: those it took when the entry was stored, remembered
        under the file's identity and the sampling settings (so a hit opens no video); on a miss the decoded
        clip's own indices key the stored entry.

        Raises:
            RecordError: as :meth:`load_pixel_values`.
        """
        cache = self.feature_cache
        sampling = {**dataclasses.asdict(self.frame_sampling), "num_threads": None, "kind": item.kind,
                    "record_num_frames": item.num_frames}  # fmt: skip
        indices = cache.load_indices(item.path, sampling)  # written with every stored entry
        if indices is not None:
            features = cache.load(cache.key(item.path, indices, self._preprocessing()))
            if features is not None:
                return features
        # a miss: decode, and key the entry with the indices actually decoded
        pixel_values, indices = self._load_clip(item, where, normalize=True)
        cache.store_indices(item.path, sampling, indices)
        key = cache.key(item.path, indices, self._preprocessing())
        metadata = {"media": str(item.path), "indices": indices, "source": where[0]}
        return cache.get_or_compute(key, lambda: pixel_values, metadata)

    def tokens(self, i: int) -> dict[str, list[int]]:
        """Sample ``i``'s ``input_ids`` and ``labels`` (no media loaded)."""
        k, row = self._locate(i)
        values = self.indexes[k].row(row)
        input_ids = values["input_ids"].tolist()
        return {"input_ids": input_ids, "labels": labels_from_spans(input_ids, values["label_spans"].reshape(-1, 2))}

    def __getitem__(self, i: int) -> dict[str, Any]:
        k, row = self._locate(i)
        index = self.indexes[k]
        values = index.row(row)
        input_ids = values["input_ids"].tolist()
        item: dict[str, Any] = {
            "input_ids": input_ids,
            "labels": labels_from_spans(input_ids, values["label_spans"].reshape(-1, 2)),
            "index": values["record_index"],
        }
        if not values["media_kind"]:
            return item
        media = [MediaItem(kind, Path(path), int(frames) or None)
                 for kind, path, frames in zip(values["media_kind"], values["media_path"], values["media_num_frames"])]
        where = (index.source, values["record_index"], values["id"], values["line"])
        try:
            if self.feature_cache is not None:
                clips = [self.load_visual_features(m, where) for m in media]
                item["visual_features"] = clips[0] if len(clips) == 1 else torch.cat(clips)  # [t, p, c]
            else:
                clips = [self._load_clip(m, where, normalize=not self.normalize_in_model)[0] for m in media]
                item["pixel_values"] = clips[0] if len(clips) == 1 else torch.cat(clips)  # [t, 3, h, w]
                if self.normalize_in_model:
                    item["pixel_affine"] = self.batch_processor.affine  # [2, 3]
        except RecordError as error:
            if self.sources[self._index_source[k]].on_error == "raise":
                raise error.with_pointer(self._pointer(index.source, index.root)) from error
            print_log(f"skipping {error}", "current", logging.WARNING)
            return {"skipped": error.as_dict()}
        item["num_frames"] = [clip.shape[0] for clip in clips]  # frames per media item, in placeholder order
        return item
