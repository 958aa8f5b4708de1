"""videoccam/dataset/collate.py: padding, frames of mixed items concatenated with their counts, skipped markers.

End to end through the dataset and DataLoader workers: tests/dataset/test_dataset.py.
"""

from __future__ import annotations

import pytest
import torch

from videoccam.dataset.collate import concat_frames, videoccam_collate_fn
from videoccam.model.hf.constants import IGNORE_INDEX


def test_pads_right_and_records_frames_per_media_item():
    video = torch.randn(3, 3, 4, 4)
    image = torch.randn(1, 3, 4, 4)
    items = [
        {"input_ids": [1, 2, 3], "labels": [IGNORE_INDEX, 2, 3], "pixel_values": video, "index": 0},
        {"input_ids": [4], "labels": [4], "index": 1},  # text-only
        {"skipped": {"index": 2, "reason": "cannot decode"}},
        {"input_ids": [5, 6], "labels": [IGNORE_INDEX, 6], "pixel_values": image, "index": 3},
    ]
    out = videoccam_collate_fn(items, pad_index=9)
    assert out["data_samples"] is None
    data = out["data"]
    assert data["input_ids"].tolist() == [[1, 2, 3], [4, 9, 9], [5, 6, 9]]
    assert data["labels"].tolist() == [[IGNORE_INDEX, 2, 3], [4, IGNORE_INDEX, IGNORE_INDEX],
                                       [IGNORE_INDEX, 6, IGNORE_INDEX]]
    assert data["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0], [1, 1, 0]]
    assert data["num_frames"] == [3, 1]
    torch.testing.assert_close(data["pixel_values"], torch.cat([video, image]))
    assert data["skipped"] == [{"index": 2, "reason": "cannot decode"}]


def test_text_only_and_all_skipped_batches():
    data = videoccam_collate_fn([{"input_ids": [1], "labels": [1]}])["data"]
    assert data["pixel_values"] is None and data["num_frames"] == []
    assert videoccam_collate_fn([{"skipped": {"index": 0}}])["data"] == {"skipped": [{"index": 0}]}


def test_concat_frames_keeps_the_memory_layout():
    frames = [torch.randn(2, 3, 4, 4).contiguous(memory_format=torch.channels_last) for _ in range(2)]
    out = concat_frames(frames)
    torch.testing.assert_close(out, torch.cat(frames))
    assert out.is_contiguous(memory_format=torch.channels_last)
    single = torch.randn(1, 3, 4, 4)
    assert concat_frames([single]) is single  # outside a worker one item is not copied


def test_uint8_frames_carry_their_normalisation_and_mixing_is_an_error():
    affine = torch.tensor([[2 / 255] * 3, [-1.0] * 3])
    video = {"input_ids": [1], "labels": [1], "pixel_values": torch.zeros(2, 3, 4, 4, dtype=torch.uint8),
             "pixel_affine": affine}  # fmt: skip
    image = dict(video, pixel_values=torch.full((1, 3, 4, 4), 255, dtype=torch.uint8))
    data = videoccam_collate_fn([video, {"input_ids": [2], "labels": [2]}, image])["data"]
    assert data["pixel_values"].dtype == torch.uint8 and data["num_frames"] == [2, 1]
    assert torch.equal(data["pixel_affine"], affine)
    floats = {"input_ids": [1], "labels": [1], "pixel_values": torch.zeros(1, 3, 4, 4)}
    for other in (floats, dict(image, pixel_affine=affine * 2)):
        with pytest.raises(ValueError, match="mixes uint8 frames"):
            videoccam_collate_fn([video, other])
