"""The collate function of the training dataloader: pad token ids, concatenate frames, count frames per item.

A batch may mix videos of any frame count, images (one frame), text-only samples and samples with several media
items; the frames of all media items are concatenated into one ``[f, 3, h, w]`` tensor (sample by sample, each
sample's items in placeholder order) and ``num_frames`` says how many belong to each item,
which is what :class:`~videoccam.model.videoccam_model.VideoCCAMModel` and the projector take. Frames stay in
the dtype the dataset gives: resized uint8 frames (a quarter of float32's bytes through DataLoader workers' shared
memory) travel with the ``pixel_affine`` that the model normalises them with on its device.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from videoccam.model.hf.constants import IGNORE_INDEX

__all__ = ["concat_frames", "videoccam_collate_fn"]


def concat_frames(frames: list[torch.Tensor]) -> torch.Tensor:
    """``torch.cat`` of per-sample ``[t, ...]`` frames (or features) into ``[f, ...]``, keeping the memory layout.

    Inside a DataLoader worker the result is allocated in shared memory, as torch's ``default_collate`` does,
    so that handing the batch to the training process copies nothing (a float32 16-frame 384x384 clip is
    28 MB; copying it into shared memory afterwards costs about as much as normalising it).
    """
    first = frames[0]
    shape = (sum(f.shape[0] for f in frames), *first.shape[1:])
    channels_last = first.dim() == 4 and first.is_contiguous(memory_format=torch.channels_last)
    memory_format = torch.channels_last if channels_last and not first.is_contiguous() else torch.contiguous_format
    if torch.utils.data.get_worker_info() is None:
        if len(frames) == 1:
            return first
        out = torch.empty(shape, dtype=first.dtype, memory_format=memory_format)
    else:
        strides = torch.empty(shape, device="meta", memory_format=memory_format).stride()
        storage = torch.UntypedStorage._new_shared(math.prod(shape) * first.element_size())
        out = first.new_empty(0).set_(storage, 0, shape, strides)
    return torch.cat(frames, out=out)


def videoccam_collate_fn(instances: list[dict[str, Any]], pad_index: int = 0) -> dict[str, Any]:
    """Pad token ids on the right, concatenate all frames and record frames per media item.

    Returns:
        ``{"data": {input_ids [b, l], attention_mask [b, l], labels [b, l], pixel_values [f, 3, h, w] or None,
        num_frames list[int] (one per media item, in batch order), skipped list[dict]}, "data_samples": None}``;
        with uint8 frames (the dataset's ``normalize_in_model``) also ``pixel_affine`` [2, 3], the per-channel
        scale and offset the model normalises them with; with a feature cache ``visual_features`` [f, p, c]
        instead of frames (``pixel_values`` None).
        Instances marked ``skipped`` by the dataset are dropped here and listed under ``skipped``. An instance's
        own ``num_frames`` (frames per media item, when it holds several) is taken as it is; without it, its
        frames are one item.
    """
    kept = [x for x in instances if "skipped" not in x]
    skipped = [x["skipped"] for x in instances if "skipped" in x]
    data: dict[str, Any] = {"skipped": skipped}
    if kept:
        length = max(len(x["input_ids"]) for x in kept)
        input_ids = torch.full((len(kept), length), pad_index, dtype=torch.long)
        labels = torch.full((len(kept), length), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(kept), length), dtype=torch.long)
        for row, x in enumerate(kept):
            n = len(x["input_ids"])
            input_ids[row, :n] = torch.as_tensor(x["input_ids"])
            labels[row, :n] = torch.as_tensor(x["labels"])
            attention_mask[row, :n] = 1
        media = [x for x in kept if "pixel_values" in x]
        frames = [x["pixel_values"] for x in media]
        with_features = [x for x in kept if "visual_features" in x]
        features = [x["visual_features"] for x in with_features]
        if frames and features:
            raise ValueError("a batch mixes frames (pixel_values) and cached features (visual_features)")
        affine = _pixel_affine(media)  # checked before concatenating frames of different dtypes
        data.update(
            input_ids=input_ids,
            labels=labels,
            attention_mask=attention_mask,
            pixel_values=concat_frames(frames) if frames else None,
            num_frames=[n for x in media or with_features for n in _frames_per_item(x)],
        )
        if features:  # a feature cache (stage 1): the model skips the vision tower
            data["visual_features"] = concat_frames(features)
        if affine is not None:
            data["pixel_affine"] = affine
    return {"data": data, "data_samples": None}


def _frames_per_item(item: dict[str, Any]) -> list[int]:
    """Frames of each media item of one instance.

    Raises:
        ValueError: if the instance's ``num_frames`` does not add up to its frames.
    """
    frames = item["pixel_values"] if "pixel_values" in item else item["visual_features"]
    counts = list(item.get("num_frames") or [frames.shape[0]])
    if sum(counts) != frames.shape[0]:
        raise ValueError(f"an item's num_frames {counts} add up to {sum(counts)}, but it holds {frames.shape[0]} "
                         f"frames (record {item.get('index')})")  # fmt: skip
    return counts


def _pixel_affine(media: list[dict[str, Any]]) -> torch.Tensor | None:
    """The one normalisation of a batch of uint8 frames (``pixel_affine`` of the items), or None for float frames.

    Raises:
        ValueError: if uint8 and float frames, or uint8 frames with different normalisations, share a batch.
    """
    affines = [x.get("pixel_affine") for x in media]
    if all(a is None for a in affines):
        return None
    if any(a is None for a in affines) or any(not torch.equal(a, affines[0]) for a in affines[1:]):
        raise ValueError(
            "a batch mixes uint8 frames (with pixel_affine) and normalised frames, or uint8 frames with different "
            "normalisations; build every dataset of a run with the same image processor and normalize_in_model"
        )
    return affines[0]
