"""Tests for videoccam/dataset/frame_processing.py: the batched path equals the HF image processor."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import CLIPImageProcessor, SiglipImageProcessor

from videoccam.dataset.frame_processing import BatchFrameProcessor

ONE_STEP = 2 / 255 + 1e-6  # one uint8 rounding step after (x / 255 - 0.5) / 0.5
TWO_STEPS = 2 * ONE_STEP  # bicubic upscaling: torch and PIL round a handful of pixels differently


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    # smooth gradients plus noise: resampling differences show up, as on real frames
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:90, 0:120]
    base = np.stack([x * 2, y * 2, (x + y)], axis=-1) % 256
    return np.stack([(base + rng.integers(0, 40, base.shape)) % 256 for _ in range(4)]).astype(np.uint8)


@pytest.mark.parametrize("size, resample", [(384, 3), (64, 3), (384, 2), (50, 2), (90, 3)])
def test_matches_siglip_processor(frames, size, resample):
    processor = SiglipImageProcessor(size={"height": size, "width": size}, resample=resample)
    fast = BatchFrameProcessor.from_image_processor(processor)
    assert fast is not None
    expected = processor([Image.fromarray(f) for f in frames], return_tensors="pt")["pixel_values"]
    got = fast(frames)
    assert got.shape == expected.shape == (4, 3, size, size) and got.dtype == torch.float32
    torch.testing.assert_close(got, expected, atol=TWO_STEPS, rtol=0)
    assert (got - expected).abs().gt(1e-4).float().mean() < 0.01  # differences are rare rounding ties
    torch.testing.assert_close(fast(list(frames)), got)  # a list of frames gives the same


def _textured(height: int, width: int, seed: int) -> np.ndarray:
    """Frames with edges, gradients and noise (rounding ties of the resize filters show up on them)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // width, y * 255 // height, ((x // 7 + y // 5) % 2) * 200], axis=-1)
    return np.stack([(base + rng.integers(0, 60, base.shape)) % 256 for _ in range(3)]).astype(np.uint8)


@pytest.mark.parametrize(
    "height, width",
    [(600, 300), (720, 240), (360, 640), (100, 150), (1080, 1920)],
    ids=["portrait_600x300", "portrait_720x240", "landscape_640x360", "upscale_150x100", "downscale_1920x1080"],
)
def test_pixels_equal_the_inference_processor_at_384(height, width):
    """Training (the dataset's batched path) and inference (``chat()``, evaluation: SiglipImageProcessor on PIL
    frames) give the same pixel values for SigLIP's 384 x 384 input: the resized uint8 frames are identical and
    the normalised values equal to float32 rounding (issue 9: torch's uint8 antialiased resize differed from
    PIL's on about 0.5% of the values by 1-2 uint8 steps)."""
    processor = SiglipImageProcessor(size={"height": 384, "width": 384})  # SigLIP-so400m-patch14-384's settings
    fast = BatchFrameProcessor.from_image_processor(processor)
    clip = _textured(height, width, seed=height + width)
    pil_frames = [Image.fromarray(f) for f in clip]
    expected = processor(pil_frames, return_tensors="pt")["pixel_values"]
    got = fast(clip)
    steps = ((got - expected).abs() / (2 / 255)).round()
    assert steps.max() == 0, f"{int(steps.max())} uint8 steps apart on {float((steps > 0).float().mean()):.2%} of values"
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)  # one uint8 step is 2/255 = 7.8e-3
    # the two halves (uint8 frames for DataLoader workers, normalisation later) give the same
    resized = fast.resize(clip)
    assert resized.dtype == torch.uint8 and resized.shape == (3, 3, 384, 384)
    reference = np.stack([np.asarray(f.resize((384, 384), Image.Resampling.BICUBIC)) for f in pil_frames])
    assert np.array_equal(resized.permute(0, 2, 3, 1).numpy(), reference)
    torch.testing.assert_close(fast.normalize(resized), got, atol=0, rtol=0)


def test_per_channel_normalisation_and_no_resize(frames):
    processor = SiglipImageProcessor(do_resize=False, image_mean=[0.48, 0.46, 0.41], image_std=[0.27, 0.26, 0.28])
    fast = BatchFrameProcessor.from_image_processor(processor)
    expected = processor(list(frames), return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(fast(frames), expected, atol=1e-5, rtol=1e-5)


def test_frames_of_different_sizes(frames):
    processor = SiglipImageProcessor(size={"height": 32, "width": 32})
    fast = BatchFrameProcessor.from_image_processor(processor)
    mixed = [frames[0], frames[1][:60, :80], frames[2]]
    expected = processor([Image.fromarray(np.ascontiguousarray(f)) for f in mixed], return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(fast(mixed), expected, atol=TWO_STEPS, rtol=0)
    with pytest.raises(ValueError, match="different sizes"):
        BatchFrameProcessor(None)(mixed)
    with pytest.raises(ValueError, match="uint8"):
        fast([frames[0].astype(np.float32)])
    with pytest.raises(ValueError, match="no frames"):
        fast([])


def test_unsupported_processors_fall_back():
    # CLIP resizes the shortest edge and centre-crops: not reproduced, so the caller uses the processor
    assert BatchFrameProcessor.from_image_processor(CLIPImageProcessor()) is None
    assert BatchFrameProcessor.from_image_processor(SiglipImageProcessor(resample=1)) is None  # lanczos
