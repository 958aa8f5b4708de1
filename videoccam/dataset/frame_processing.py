"""Clip preprocessing: PIL's resize (the one the image processor runs) and a batched torch rescale + normalise.

A Hugging Face image processor handles one PIL image at a time (``SiglipImageProcessor`` converts each frame
to PIL, resizes it with PIL, then rescales and normalises in float64/float32 numpy). :class:`BatchFrameProcessor`
produces the same ``pixel_values`` for a whole clip:

1. resize each uint8 frame with ``PIL.Image.resize`` (the very call ``transformers.image_transforms.resize``
   makes), giving a uint8 ``[t, H, W, 3]`` array: training sees the pixels ``chat()`` and evaluation see;
2. convert to float32 and apply ``x * (rescale / std) - mean / std`` in place, batched in torch (the HF
   processor's float64 numpy steps are what made the per-frame path slow).

Why not torch's antialiased uint8 ``interpolate`` (used until issue 9): it follows PIL's filters and pass
order (horizontal, then vertical, rounding to uint8 in between), but quantises the filter weights to int16
with a precision chosen from the largest weight (14 bits when upscaling), where PIL uses 22-bit int32
weights. Sums that fall near a rounding boundary then round differently, once per pass: about 0.5% of the
values differed by 1 or 2 uint8 steps, most when upscaling. Rounding differences that depend on the kernel
cannot be removed from outside it, so the resize is PIL's own; the two steps are separate (:meth:`resize`
gives uint8 frames, :meth:`normalize` the model's input) so that DataLoader workers can return the resized
uint8 frames and leave normalisation to the collate or the model.

The output keeps a channels-last memory layout (``[t, 3, H, W]`` shape, ``torch.channels_last`` strides):
making it contiguous would cost more than the normalisation itself, and every consumer (``torch.cat`` in the
collate, ``.to(device)``, SigLIP's patch-embedding convolution) takes either.

It is built only from processors whose steps it reproduces (checked by capability, never by class name): a
fixed ``size={"height", "width"}`` resize (or none) with bilinear or bicubic resampling, an optional rescale and
an optional normalise, and none of centre-crop, padding, tiling or thumbnailing. For those the output equals the
processor's to float32 rounding (tests/dataset/test_frame_processing.py checks portrait, landscape, up- and
down-scaling at SigLIP's 384). For any other processor :meth:`BatchFrameProcessor.from_image_processor` returns
``None`` and callers use the processor itself.

Shapes: t frames, h x w input size, H x W output size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

# PIL resampling filters this class accepts (the ones image processors of vision towers use). Others (nearest,
# lanczos, box, hamming) fall back to the processor itself.
_MODES = {int(Image.Resampling.BILINEAR): "bilinear", int(Image.Resampling.BICUBIC): "bicubic"}
_PIL_FILTERS = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}
# Processor options whose step this class does not implement; any of them switched on means "not supported".
_UNSUPPORTED_STEPS = (
    "do_center_crop",
    "do_pad",
    "do_image_splitting",
    "do_thumbnail",
    "do_align_long_axis",
    "do_crop_margin",
    "do_split_image",
)


def _channel_values(value: Any, name: str) -> list[float]:
    values = [float(value)] * 3 if isinstance(value, (int, float)) else [float(v) for v in value]
    if len(values) != 3:
        raise ValueError(f"{name} must have 3 values (RGB), got {value!r}")
    return values


class BatchFrameProcessor:
    """Resize (PIL, per frame), rescale and normalise (torch, per clip) a clip of uint8 RGB frames.

    Args:
        size: Output ``(H, W)``, or ``None`` to keep the input size.
        resample: ``"bilinear"`` or ``"bicubic"`` (PIL's filters, as the image processor applies them).
        rescale_factor: Multiplier applied before normalising (``1 / 255``), or ``None`` for none.
        image_mean: Per-channel mean subtracted after rescaling, or ``None`` for no normalisation.
        image_std: Per-channel std divided by after subtracting the mean.
    """

    def __init__(
        self,
        size: tuple[int, int] | None,
        resample: str = "bicubic",
        rescale_factor: float | None = 1 / 255,
        image_mean: Sequence[float] | None = (0.5, 0.5, 0.5),
        image_std: Sequence[float] | None = (0.5, 0.5, 0.5),
    ) -> None:
        if resample not in ("bilinear", "bicubic"):
            raise ValueError(f"resample must be 'bilinear' or 'bicubic', got {resample!r}")
        if (image_mean is None) != (image_std is None):
            raise ValueError("image_mean and image_std must be given together")
        self.size = None if size is None else (int(size[0]), int(size[1]))
        self.resample = resample
        scale = 1.0 if rescale_factor is None else float(rescale_factor)
        mean = [0.0] * 3 if image_mean is None else _channel_values(image_mean, "image_mean")
        std = [1.0] * 3 if image_std is None else _channel_values(image_std, "image_std")
        if any(s == 0 for s in std):
            raise ValueError(f"image_std must be non-zero, got {std}")
        # x_out = (x * scale - mean) / std = x * (scale / std) + (-mean / std): one fused multiply-add.
        self._scale = torch.tensor([scale / s for s in std], dtype=torch.float32).view(1, 3, 1, 1)
        self._bias = torch.tensor([-m / s for m, s in zip(mean, std)], dtype=torch.float32).view(1, 3, 1, 1)
        same = len(set(mean)) == 1 and len(set(std)) == 1
        self._uniform = (scale / std[0], -mean[0] / std[0]) if same else None

    @classmethod
    def from_image_processor(cls, processor: Any) -> BatchFrameProcessor | None:
        """The batched equivalent of ``processor``, or ``None`` if it does a step this class does not do.

        Args:
            processor: A Hugging Face image processor (attributes ``do_resize``, ``size``, ``resample``,
                ``do_rescale``, ``rescale_factor``, ``do_normalize``, ``image_mean``, ``image_std``).

        Returns:
            A :class:`BatchFrameProcessor`, or ``None`` (use the processor itself).
        """
        if any(getattr(processor, name, False) for name in _UNSUPPORTED_STEPS):
            return None
        try:
            size = None
            resample = "bicubic"
            if getattr(processor, "do_resize", False):
                spec = getattr(processor, "size", None) or {}
                if set(spec) != {"height", "width"}:  # shortest_edge / longest_edge keep the aspect ratio
                    return None
                size = (int(spec["height"]), int(spec["width"]))
                resample = _MODES.get(int(getattr(processor, "resample", -1)))
                if resample is None:
                    return None
            rescale = float(processor.rescale_factor) if getattr(processor, "do_rescale", False) else None
            mean = std = None
            if getattr(processor, "do_normalize", False):
                mean, std = processor.image_mean, processor.image_std
            return cls(size, resample, rescale, mean, std)
        except (AttributeError, TypeError, ValueError):
            return None

    def _resize_batch(self, batch: np.ndarray) -> np.ndarray:
        """``[t, h, w, 3]`` uint8 -> ``[t, H, W, 3]`` uint8 with PIL, frame by frame (PIL's own result, bit for bit)."""
        if self.size is None or tuple(batch.shape[1:3]) == self.size:
            return batch
        height, width = self.size
        out = np.empty((batch.shape[0], height, width, 3), dtype=np.uint8)
        resample = _PIL_FILTERS[self.resample]
        for i, frame in enumerate(batch):
            out[i] = np.asarray(Image.fromarray(frame).resize((width, height), resample))
        return out

    def resize(self, frames: Sequence[np.ndarray] | np.ndarray) -> torch.Tensor:
        """Resize a clip to ``size`` without normalising it.

        Args:
            frames: as for :meth:`__call__`.

        Returns:
            ``[t, 3, H, W]`` uint8 (channels-last memory layout): the frames the image processor would resize to.

        Raises:
            ValueError: as :meth:`__call__`.
        """
        parts = [self._resize_batch(batch) for batch in self._batches(frames)]
        resized = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return torch.from_numpy(resized).permute(0, 3, 1, 2)  # [t, 3, H, W], channels-last memory: no copy

    @property
    def affine(self) -> torch.Tensor:
        """``[2, 3]`` float32: per-channel scale (row 0) and offset (row 1) of :meth:`normalize`.

        ``frames.float() * scale + offset`` (per channel, in float32) is what :meth:`normalize` computes; the
        dataset hands it to the model with uint8 frames so the model normalises on its own device
        (``VideoCCAMModel``, ``data["pixel_affine"]``).
        """
        return torch.stack([self._scale.flatten(), self._bias.flatten()])

    def normalize(self, frames: torch.Tensor) -> torch.Tensor:
        """Rescale and normalise resized uint8 frames (what :meth:`resize` returns) to the model's input.

        Args:
            frames: ``[t, 3, H, W]`` uint8, any memory layout (on any device).

        Returns:
            ``[t, 3, H, W]`` float32 in the same memory layout.
        """
        # Stay channels-last: converting the layout costs more than the whole normalisation (the model's
        # patch-embedding convolution takes either layout).
        out = frames.to(torch.float32)
        if self._uniform is not None:  # the same mean and std for R, G, B (SigLIP): scalar ops vectorise fully
            return out.mul_(self._uniform[0]).add_(self._uniform[1])
        return out.mul_(self._scale.to(out.device)).add_(self._bias.to(out.device))  # per-channel broadcast

    def _batches(self, frames: Sequence[np.ndarray] | np.ndarray) -> list[np.ndarray]:
        """Validate a clip and split it into ``[n, h, w, 3]`` arrays of equal-sized frames, in order."""
        if isinstance(frames, np.ndarray) and frames.ndim == 4:  # one clip array: no stacking copy
            if frames.dtype != np.uint8 or frames.shape[-1] != 3 or not len(frames):
                raise ValueError(f"frames must be a non-empty [t, h, w, 3] uint8 RGB array, got {frames.dtype} "
                                 f"{frames.shape}")  # fmt: skip
            return [np.ascontiguousarray(frames)]
        if isinstance(frames, np.ndarray):
            frames = [frames]
        if not len(frames):
            raise ValueError("no frames to process")
        for frame in frames:
            if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
                raise ValueError(f"frames must be [h, w, 3] uint8 RGB arrays, got {frame.dtype} {frame.shape}")
        shapes = {frame.shape for frame in frames}
        if len(shapes) == 1:
            return [np.stack(frames)]
        if self.size is None:
            raise ValueError(f"frames of different sizes {sorted(shapes)} need a resize to one size")
        # Frames of different sizes (a frame folder can hold them): one batch per run of equal sizes.
        parts, start = [], 0
        for end in range(1, len(frames) + 1):
            if end == len(frames) or frames[end].shape != frames[start].shape:
                parts.append(np.stack(frames[start:end]))
                start = end
        return parts

    def __call__(self, frames: Sequence[np.ndarray] | np.ndarray) -> torch.Tensor:
        """Process a clip: :meth:`resize`, then :meth:`normalize`.

        Args:
            frames: ``[t, h, w, 3]`` uint8 RGB array, or a list of ``[h, w, 3]`` uint8 arrays (of different
                sizes only when a resize to one size is configured).

        Returns:
            ``pixel_values`` ``[t, 3, H, W]`` float32 (channels-last memory layout).

        Raises:
            ValueError: On an empty clip, a non-uint8 or non-RGB frame, or (without resize) frames of
                different sizes.
        """
        return self.normalize(self.resize(frames))
