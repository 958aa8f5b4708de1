"""The collate function of the training dataloader: pad token ids, concatenate frames, count frames per item.

A batch may mix videos of any frame count, images (one frame) and text-only samples; the frames of all media
items are concatenated into one ``[f, 3, h, w]`` tensor and ``num_frames`` says how many belong to each item,
which is what :class:`~videoccam.model.videoccam_model.VideoCCAMModel` and the projector take.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from videoccam.model.hf.constants import IGNORE_INDEX

__all__ = ["concat_frames", "videoccam_collate_fn"]


def concat_frames(frames: list[torch.Tensor]) -> torch.Tensor:
    """``torch.cat`` of per-sample ``[t, 3, h, w]`` frames into ``[f, 3, h, w]``, keeping the memory layout.

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
        num_frames list[int] (one per media item, in batch order), skipped list[dict]}, "data_samples": None}``.
        Instances marked ``skipped`` by the dataset are dropped here and listed under ``skipped``.
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
        frames = [x["pixel_values"] for x in kept if "pixel_values" in x]
        data.update(
            input_ids=input_ids,
            labels=labels,
            attention_mask=attention_mask,
            pixel_values=concat_frames(frames) if frames else None,
            num_frames=[f.shape[0] for f in frames],
        )
    return {"data": data, "data_samples": None}
