"""The training dataset: custom video QA records -> token ids, labels and frames.

Records are parsed and tokenised once at construction (with a progress bar), so bad records are found before
the first step and every sample's LLM length is known exactly (text tokens + ``num_queries`` per media item),
which feeds xtuner's ``LengthGroupedSampler`` through :attr:`VideoCCAMDataset.modality_length`.
Frames are decoded lazily in ``__getitem__``.

Bad input never silently becomes another sample. With ``on_error="raise"`` (default) the first bad record
stops training with its file, index, id and reason. With ``on_error="skip"`` the record is dropped
deterministically: construction-time problems (malformed JSONL line, schema, placeholders, missing or empty
media, missing subtitles, length) leave it out of the index, and load-time problems (a video that exists but
cannot be decoded) make ``__getitem__`` return a ``{"skipped": ...}`` marker that the collate function moves to
``data["skipped"]`` of the batch (so it crosses DataLoader worker processes with the batch);
:class:`videoccam.engine.SkippedSamplesHook` logs both kinds and writes ``skipped_samples.json`` to the work dir.

Construction checks everything that needs no decoding, so ``raise`` stops before the first step on every such
problem, in file order; ``tools/validate_data.py`` also decodes every sample, with the same code.

Frames are decoded straight to numpy and resized with PIL (the image processor's own resize, so training sees
the pixels ``chat()`` and evaluation see) when the image processor allows it (SigLIP's does); items then hold
the resized uint8 frames and the rescale / normalisation (``pixel_affine``) that the model applies on its device
(``normalize_in_model``; or per clip in torch here, :mod:`.frame_processing`). Other processors are called as
they are (``tools/bench_dataloader.py`` measures these paths against raw decord).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mmengine.logging import print_log
from torch.utils.data import Dataset
from tqdm import tqdm

from videoccam.config import build_from_cfg, resolve_template
from videoccam.dataset.feature_cache import VisionFeatureCache
from videoccam.dataset.frame_processing import BatchFrameProcessor
from videoccam.dataset.records import (
    RecordError,
    Sample,
    check_media_path,
    check_num_frames,
    load_records,
    media_error_category,
    parse_record,
)
from videoccam.dataset.video_io import SAMPLINGS, FrameSampling, MediaLoadError
from videoccam.model.hf.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX
from videoccam.xtuner_compat import make_xtuner_importable

__all__ = ["ON_ERROR", "VideoCCAMDataset", "tokenize_sample"]

ON_ERROR = ("raise", "skip")


def tokenize_sample(
    sample: Sample, tokenizer: Any, template: Any, max_length: int, num_queries: int, source: str
) -> dict[str, Any]:
    """Apply the chat template and tokenise, truncating only text after the visual placeholder.

    ``max_length`` is the LLM context for the whole sample; each media item costs ``num_queries`` tokens but
    only one placeholder id, so the text budget is ``max_length - n_media * (num_queries - 1)``. A sample
    over the budget is cut at its end (in the answers, which come after the placeholder); it is rejected when
    that would cut the placeholder itself or leave no answer token.

    Returns:
        ``input_ids`` and ``labels`` (truncated), ``truncated`` (bool), ``num_tokens`` (the untruncated LLM
        length, visual tokens included), ``answer_tokens`` and ``kept_answer_tokens`` (trained tokens before and
        after truncation).

    Raises:
        RecordError: (category ``too_long``) the visual tokens do not fit, truncation would cut through the
            placeholder, or it would remove every answer token.
    """
    make_xtuner_importable()  # xtuner.dataset imports torchvision (see videoccam/xtuner_compat.py)
    from xtuner.dataset.map_fns import template_map_fn
    from xtuner.dataset.utils import encode_fn

    n_media = 0 if sample.kind == "text" else 1

    def fail(reason: str) -> RecordError:
        return RecordError(source, sample.index, sample.record_id, reason, "too_long")

    budget = max_length - n_media * (num_queries - 1)
    if budget <= 1:
        raise fail(f"max_length={max_length} leaves no room for text after {num_queries} visual tokens")
    example = template_map_fn({"conversation": copy.deepcopy(sample.conversation)}, template)
    full = encode_fn(example, tokenizer, max_length=10**9, with_image_token=n_media > 0)
    num_tokens = len(full["input_ids"]) + n_media * (num_queries - 1)
    answer_tokens = sum(label != IGNORE_INDEX for label in full["labels"])
    input_ids, labels = full["input_ids"][:budget], full["labels"][:budget]
    kept = sum(label != IGNORE_INDEX for label in labels)
    if input_ids.count(IMAGE_TOKEN_INDEX) != n_media:
        raise fail(
            f"too long: {num_tokens} LLM tokens > max_length={max_length}, and the media placeholder sits "
            f"beyond the text budget of {budget} tokens, so truncation would cut through the visual tokens; "
            "shorten the text before the placeholder or raise max_length"
        )
    if answer_tokens == 0:
        raise fail("the answer turns tokenise to nothing (empty answers?)")
    if kept == 0:
        raise fail(
            f"too long: {num_tokens} LLM tokens > max_length={max_length}; truncating to the text budget of "
            f"{budget} tokens would remove the whole answer ({answer_tokens} tokens); shorten the question "
            "or raise max_length"
        )
    return {
        "input_ids": input_ids,
        "labels": labels,
        "truncated": len(full["input_ids"]) > budget,
        "num_tokens": num_tokens,
        "answer_tokens": answer_tokens,
        "kept_answer_tokens": kept,
    }


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


class VideoCCAMDataset(Dataset):
    """Map-style dataset over one custom-format data file (data/README.md).

    Args:
        data_path: ``.json`` list or ``.jsonl`` file.
        tokenizer: tokenizer or builder dict.
        image_processor: image processor or builder dict (SigLIP's).
        template: an xtuner ``PROMPT_TEMPLATE`` entry (e.g. ``PROMPT_TEMPLATE.qwen_chat``).
        num_queries: visual tokens per media item (the projector's ``num_queries``).
        max_length: LLM context per sample, visual tokens included.
        data_root: folder that media paths in the records are relative to (default: the data file's folder).
        num_frames: frames per video for ``uniform`` sampling (a record's ``num_frames`` overrides it).
        sampling: ``uniform`` (segment midpoints) or ``fps`` (``target_fps``, at most ``max_frames``; a
            record's ``num_frames`` overrides ``max_frames``).
        target_fps: sampling rate for ``fps``.
        max_frames: frame cap for ``fps`` sampling (default: ``num_queries``).
        decode_threads: decoder threads per video (0 = the decoder's default).
        on_error: ``raise`` or ``skip`` (see the module docstring).
        max_dataset_length: keep only the first N records (quick experiments).
        folder_fps: frame rate of frame folders (for ``fps`` sampling).
        video_backend: ``auto`` (decord, PyAV fallback), ``decord`` or ``pyav``.
        check_files: check at construction that every media file / frame folder / subtitles file exists and
            is not empty (one ``stat`` per record; turn off only for very slow file systems).
        fast_image_processing: preprocess clips with :class:`BatchFrameProcessor` (PIL resize, batched torch
            normalisation; the same values as the processor) when the image processor's steps allow it;
            ``False`` always calls the image processor on PIL frames.
        feature_cache: a :class:`~videoccam.dataset.feature_cache.VisionFeatureCache`, its builder dict or a dict
            of its arguments (``enable_feature_cache`` sets one in a config):
            media items then hold their frozen vision tower's ``visual_features`` [t, p, c] from the cache
            (computed and stored on a miss) instead of frames; stage 1 only (the model checks).
        normalize_in_model: with the batched preprocessing, items hold the resized **uint8** frames and their
            normalisation (``pixel_affine``, [2, 3]) instead of float32 ``pixel_values``; ``VideoCCAMModel``
            normalises them on its device to the same values. A quarter of the bytes through DataLoader workers'
            shared memory and no float pass in the workers (``tools/bench_dataloader.py``). ``False`` gives
            float32 ``pixel_values`` as the image processor does.
    """

    def __init__(
        self,
        data_path: str,
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
    ) -> None:
        max_frames = _check_arguments(on_error, sampling, num_frames, max_frames, num_queries)
        self.source = str(data_path)
        self.data_root = Path(data_root) if data_root is not None else Path(data_path).parent
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

        records = load_records(data_path, on_error=on_error)
        if max_dataset_length is not None:
            records = records[:max_dataset_length]
        self.samples: list[Sample] = []
        self.tokens: list[dict[str, Any]] = []
        self.skipped: list[dict[str, Any]] = []  # construction-time skips
        # trained answer tokens per sample (labels != IGNORE_INDEX after truncation), indexed like the dataset:
        # TokenMeanTrainLoop counts a step's answer tokens from it without loading the step's samples
        self.answer_token_counts = np.zeros(0, dtype=np.int64)
        self._index(records, check_files)

    def _index(self, records: list[Any], check_files: bool) -> None:
        """Parse, check and tokenise every record into :attr:`samples` / :attr:`tokens` (or :attr:`skipped`).

        Raises:
            RecordError: the first bad record, with ``on_error="raise"``.
            ValueError: if no record is usable.
        """
        name = Path(self.source).name
        counts = []
        for index, record in enumerate(tqdm(records, desc=f"checking {name}", mininterval=2)):
            try:
                if isinstance(record, RecordError):  # a malformed JSONL line (on_error="skip")
                    raise record
                sample = parse_record(record, index, self.source, self.data_root)
                check_num_frames(sample, self.num_queries, self.source)
                if check_files:
                    check_media_path(sample, self.source)
                tokens = tokenize_sample(
                    sample, self.tokenizer, self.template, self.max_length, self.num_queries, self.source
                )
            except RecordError as e:
                if self.on_error == "raise":
                    raise
                self.skipped.append(e.as_dict())
                print_log(f"skipping {e}", "current", logging.WARNING)
                continue
            counts.append(tokens["kept_answer_tokens"])
            del tokens["num_tokens"], tokens["answer_tokens"], tokens["kept_answer_tokens"]  # keep it small
            self.samples.append(sample)
            self.tokens.append(tokens)
        self.answer_token_counts = np.asarray(counts, dtype=np.int64)
        if not self.samples:
            raise ValueError(f"{self.source}: no usable record ({len(self.skipped)} skipped)")
        if self.skipped:
            print_log(
                f"{len(self.skipped)} of {len(records)} records of {self.source} skipped (on_error='skip'); "
                "they will be listed in skipped_samples.json",
                "current",
                logging.WARNING,
            )
        truncated = sum(t["truncated"] for t in self.tokens)
        if truncated:
            print_log(f"{truncated} samples of {self.source} were truncated to max_length={self.max_length}",
                      "current")  # fmt: skip

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def modality_length(self) -> list[int]:
        """LLM length of each sample (text + ``num_queries`` per media item); negative for text-only."""
        lengths = []
        for sample, tokens in zip(self.samples, self.tokens):
            n = len(tokens["input_ids"])
            lengths.append(-n if sample.kind == "text" else n - 1 + self.num_queries)
        return lengths

    @property
    def length(self) -> list[int]:
        return [abs(n) for n in self.modality_length]

    def load_frames(self, sample: Sample, output: str = "pil") -> list[Any]:
        """Decode the frames of one sample (an image is one frame), with this dataset's sampling.

        Raises:
            MediaLoadError: The media cannot be read.
        """
        if sample.kind == "text":
            return []
        clip = self.frame_sampling.load(sample.media_path, sample.kind, sample.num_frames, output=output)
        return clip.frames

    def _media_error(self, sample: Sample, error: MediaLoadError) -> RecordError:
        category = media_error_category(sample.media_path)
        return RecordError(self.source, sample.index, sample.record_id, str(error), category)

    def _load_clip(self, sample: Sample, normalize: bool) -> tuple[torch.Tensor, list[int]]:
        """(preprocessed frames, their indices); uint8 frames when ``not normalize`` and the batched path runs."""
        try:
            output = "numpy" if self.batch_processor is not None else "pil"
            clip = self.frame_sampling.load(sample.media_path, sample.kind, sample.num_frames, output=output)
        except MediaLoadError as e:
            raise self._media_error(sample, e) from e
        frames, indices = clip.frames, clip.indices
        if len(frames) > self.num_queries:
            raise RecordError(
                self.source, sample.index, sample.record_id,
                f"{sample.media_path}: {len(frames)} frames > num_queries={self.num_queries}", "too_many_frames",
            )  # fmt: skip
        if self.batch_processor is not None:
            resized = self.batch_processor.resize(frames)  # uint8
            return (self.batch_processor.normalize(resized) if normalize else resized), indices
        return self.image_processor(frames, return_tensors="pt")["pixel_values"], indices

    def load_pixel_values(self, sample: Sample) -> torch.Tensor:
        """Decoded and preprocessed frames of a media sample: ``[t, 3, H, W]`` float32, or resized uint8 frames
        when :attr:`normalize_in_model` (normalised by ``self.batch_processor.normalize`` or the model).

        Raises:
            RecordError: The media cannot be read (``media_*`` categories), or gives more frames than
                ``num_queries`` (``too_many_frames``).
        """
        return self._load_clip(sample, normalize=not self.normalize_in_model)[0]

    def _preprocessing(self) -> dict[str, Any]:
        """The image processor's settings, part of a cached feature's key (read once)."""
        if getattr(self, "_preprocessing_settings", None) is None:
            to_dict = getattr(self.image_processor, "to_dict", None)
            settings = to_dict() if callable(to_dict) else vars(self.image_processor)
            self._preprocessing_settings = {"class": type(self.image_processor).__name__,
                                            **{k: v for k, v in settings.items() if k[0] != "_"}}  # fmt: skip
        return self._preprocessing_settings

    def load_visual_features(self, sample: Sample) -> torch.Tensor:
        """The sample's frame features ``[t, p, c]`` from :attr:`feature_cache` (computed and stored on a miss).

        The key holds the frame indices the sampler takes: those it took when the entry was stored, remembered
        under the file's identity and the sampling settings (so a hit opens no video); on a miss the decoded
        clip's own indices key the stored entry.

        Raises:
            RecordError: as :meth:`load_pixel_values`.
        """
        cache = self.feature_cache
        sampling = {**dataclasses.asdict(self.frame_sampling), "num_threads": None, "kind": sample.kind,
                    "record_num_frames": sample.num_frames}  # fmt: skip
        indices = cache.load_indices(sample.media_path, sampling)  # written with every stored entry
        if indices is not None:
            features = cache.load(cache.key(sample.media_path, indices, self._preprocessing()))
            if features is not None:
                return features
        # a miss: decode, and key the entry with the indices actually decoded
        pixel_values, indices = self._load_clip(sample, normalize=True)
        cache.store_indices(sample.media_path, sampling, indices)
        key = cache.key(sample.media_path, indices, self._preprocessing())
        metadata = {"media": str(sample.media_path), "indices": indices, "source": self.source}
        return cache.get_or_compute(key, lambda: pixel_values, metadata)

    def __getitem__(self, i: int) -> dict[str, Any]:
        sample, tokens = self.samples[i], self.tokens[i]
        item: dict[str, Any] = {
            "input_ids": tokens["input_ids"],
            "labels": tokens["labels"],
            "index": sample.index,
        }
        if sample.kind == "text":
            return item
        try:
            if self.feature_cache is not None:
                item["visual_features"] = self.load_visual_features(sample)  # [t, p, c]
            else:
                item["pixel_values"] = self.load_pixel_values(sample)  # [t, 3, h, w]
                if self.normalize_in_model:
                    item["pixel_affine"] = self.batch_processor.affine  # [2, 3]
        except RecordError as error:
            if self.on_error == "raise":
                raise
            print_log(f"skipping {error}", "current", logging.WARNING)
            return {"skipped": error.as_dict()}
        return item
