"""Frozen vision-tower features cached on disk, so that later epochs of stage 1 skip decoding and SigLIP.

In stage 1 the vision tower is frozen and has no LoRA, so a sample's frame features are the same in every epoch:
``hidden_states[visual_select_layer]`` of its frames, ``[t, p, c]``. :class:`VisionFeatureCache` stores them, one
safetensors file per sample, and :class:`~videoccam.dataset.dataset.VideoCCAMDataset` (``feature_cache=``) then
yields ``visual_features`` instead of ``pixel_values``; ``VideoCCAMModel`` feeds them to the projector directly.

**Keys.** A file is found only under the key of everything that determines its content: the media's identity
(resolved path, size and modification time in ns; for a frame folder, those of every frame file), the frame
indices the sampler takes, the preprocessing (the image processor's settings: output size, resampling,
normalisation), a hash of the vision tower's weights (every tensor's name, dtype, shape and bytes), the selected
layer and the storage dtype. Change any of them (a re-encoded video, other sampling, another SigLIP or
checkpoint) and the key changes: the entry is recomputed, never reused. Stale files are not deleted (remove the
folder to reclaim the space). The frame indices of a file are themselves remembered under its identity and the
sampling settings, so a hit reads two small files and opens no video.

**Misses** are computed where they are found: the cache builds its own copy of the (frozen) vision tower from
the same builder dict as the model, on ``device`` (the loading process; CPU by default), in eval mode.
``tools/precompute_features.py`` fills the cache before training (``--device cuda`` on a GPU, with a progress
bar); at real sizes that is the way to do it, since SigLIP-so400m on a CPU takes seconds per frame.

**Dtype.** By default features are stored in the vision tower's dtype, which makes the cached run equal to the
uncached one (a bf16 tower's output *is* bf16). ``dtype="float16"`` / ``"bfloat16"`` halves an fp32 tower's
files at the cost of rounding. **Disk**: ``t x p x c x bytes``; SigLIP-so400m/384 in bf16 is
729 x 1152 x 2 B = 1.6 MiB per frame, 26 MiB per 16-frame video, about 0.9 TB for LLaVA-Pretrain-558K's images
alone. It pays when an epoch is repeated (several stage-1 epochs, ablations of the projector or the LLM on the
same data) and reading 1.6 MiB per frame is faster than decoding and running SigLIP on it (a local NVMe reads
that in well under a millisecond; SigLIP-so400m takes about 1 ms per frame on an H100 in bf16, decoding a few
ms on a CPU core). It does not apply to stage 2 (LoRA on SigLIP changes the features every step).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

__all__ = ["VisionFeatureCache", "enable_feature_cache", "media_identity"]

_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def _dtype_or_value(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("torch.") and isinstance(getattr(torch, value[6:], None), torch.dtype):
        return getattr(torch, value[6:])
    return value


def media_identity(path: str | os.PathLike) -> dict[str, Any]:
    """What identifies a media file's content without reading it: resolved path, size, mtime (ns).

    A frame folder is identified by every frame file's name, size and mtime (editing one frame changes it).

    Raises:
        FileNotFoundError: If ``path`` does not exist.
    """
    from videoccam.dataset.video_io import list_frame_files

    path = Path(path).resolve()
    stat = path.stat()
    if path.is_dir():
        files = [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in list_frame_files(path)]
        return {"path": str(path), "files": files}
    return {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _weights_hash(module: torch.nn.Module) -> str:
    """blake2b of every parameter and buffer: name, dtype, shape and bytes, in name order."""
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in sorted(module.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class VisionFeatureCache:
    """Per-sample frame features of a frozen vision tower, on disk (see the module docstring).

    Args:
        cache_dir: folder of the cache (created on first write).
        visual_encoder: the vision tower: a module, or the builder dict the model is built with
            (``model.visual_encoder`` of the config), built on first use.
        visual_select_layer: ``hidden_states`` index (the model's ``visual_select_layer``).
        dtype: storage dtype, ``"float16"``, ``"bfloat16"`` or ``"float32"``; None keeps the tower's dtype
            (exact).
        device: where misses are encoded (``"cpu"``, ``"cuda"``).
        chunk_size: frames per vision-tower forward when encoding a miss.
    """

    def __init__(
        self,
        cache_dir: str | os.PathLike,
        visual_encoder: Any,
        visual_select_layer: int = -2,
        dtype: str | None = None,
        device: str = "cpu",
        chunk_size: int = 16,
    ) -> None:
        if dtype is not None and dtype not in _DTYPES:
            raise ValueError(f"dtype must be None or one of {sorted(_DTYPES)}, got {dtype!r}")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.cache_dir = Path(cache_dir)
        self.visual_select_layer = visual_select_layer
        self.dtype = dtype
        self.device = device
        self.chunk_size = chunk_size
        self._spec = visual_encoder
        self._encoder = visual_encoder if isinstance(visual_encoder, torch.nn.Module) else None
        self._weights_hash: str | None = None
        self.hits = self.misses = 0

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if not isinstance(self._spec, torch.nn.Module):
            state["_encoder"] = None  # rebuilt on demand in a spawned DataLoader worker
        return state

    @property
    def encoder(self) -> torch.nn.Module:
        """The frozen vision tower (built from the builder dict on first use), in eval mode on ``device``."""
        if self._encoder is None:
            from videoccam.config import build_from_cfg

            spec = self._spec
            if isinstance(spec, Mapping):  # a dumped config holds dtypes as "torch.bfloat16" strings
                spec = {k: _dtype_or_value(v) for k, v in spec.items()}
            self._encoder = build_from_cfg(spec)
        self._encoder.requires_grad_(False).eval().to(self.device)
        return self._encoder

    @property
    def weights_hash(self) -> str:
        if self._weights_hash is None:
            self._weights_hash = _weights_hash(self.encoder)
            if not isinstance(self._spec, torch.nn.Module):
                self._encoder = None  # hashed; rebuilt only if a miss needs it
        return self._weights_hash

    def storage_dtype(self, encoder_dtype: torch.dtype) -> torch.dtype:
        return _DTYPES[self.dtype] if self.dtype is not None else encoder_dtype

    def key(self, media_path: str | os.PathLike, indices: list[int], preprocessing: dict[str, Any]) -> str:
        """The key of a sample's features (see the module docstring)."""
        fields = {
            "media": media_identity(media_path),
            "indices": [int(i) for i in indices],
            "preprocessing": preprocessing,
            "weights": self.weights_hash,
            "layer": self.visual_select_layer,
            "dtype": self.dtype,
        }
        text = json.dumps(fields, sort_keys=True, default=str)
        return hashlib.blake2b(text.encode(), digest_size=20).hexdigest()

    def path(self, key: str) -> Path:
        return self.cache_dir / key[:2] / f"{key}.safetensors"

    def _indices_path(self, media_path: str | os.PathLike, sampling: dict[str, Any]) -> Path:
        text = json.dumps({"media": media_identity(media_path), "sampling": sampling}, sort_keys=True, default=str)
        key = hashlib.blake2b(text.encode(), digest_size=20).hexdigest()
        return self.cache_dir / "indices" / key[:2] / f"{key}.json"

    def load_indices(self, media_path: str | os.PathLike, sampling: dict[str, Any]) -> list[int] | None:
        """The frame indices a sampler took from this media file before (same file identity and sampling)."""
        path = self._indices_path(media_path, sampling)
        return json.loads(path.read_text()) if path.is_file() else None

    def store_indices(self, media_path: str | os.PathLike, sampling: dict[str, Any], indices: list[int]) -> None:
        """Remember ``indices`` so that a hit needs no look at the video (opening a long one builds its index)."""
        path = self._indices_path(media_path, sampling)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps([int(i) for i in indices]))
        os.replace(tmp, path)

    def load(self, key: str) -> torch.Tensor | None:
        """The cached ``[t, p, c]`` features under ``key``, or None on a miss."""
        from safetensors.torch import load_file

        path = self.path(key)
        if not path.is_file():
            return None
        self.hits += 1
        return load_file(str(path))["features"]

    @torch.no_grad()
    def compute(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``[t, 3, H, W]`` normalised float frames -> ``[t, p, c]`` features in the storage dtype, on the CPU."""
        from videoccam.model.hf.modeling_videoccam import encode_frames

        encoder = self.encoder
        frames = pixel_values.to(device=self.device, dtype=encoder.dtype)
        features = encode_frames(encoder, frames, self.visual_select_layer, self.chunk_size)
        return features.to(self.storage_dtype(encoder.dtype)).cpu().contiguous()

    def store(self, key: str, features: torch.Tensor, metadata: dict[str, Any] | None = None) -> Path:
        """Write ``features`` under ``key`` atomically (a concurrent reader sees the whole file or none)."""
        from safetensors.torch import save_file

        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        meta = {k: json.dumps(v, default=str) for k, v in (metadata or {}).items()}
        save_file({"features": features.contiguous()}, str(tmp), metadata=meta)
        os.replace(tmp, path)
        return path

    def get_or_compute(
        self, key: str, load_pixel_values: Any, metadata: dict[str, Any] | None = None
    ) -> torch.Tensor:
        """Cached features under ``key``, or ``compute(load_pixel_values())`` stored under it."""
        features = self.load(key)
        if features is None:
            self.misses += 1
            features = self.compute(load_pixel_values())
            self.store(key, features, metadata)
        return features


def enable_feature_cache(cfg: Any, cache_dir: str | os.PathLike, device: str = "cpu", dtype: str | None = None) -> Any:
    """Turn the feature cache on in a loaded training config (its dataset yields cached features).

    Raises:
        ValueError: if the config trains the vision tower (LoRA or unfrozen): its features change every step.
    """
    model = cfg.model
    if model.get("visual_encoder_lora") is not None or not model.get("freeze_visual_encoder", True):
        raise ValueError(
            "the feature cache needs a frozen vision tower without LoRA (stage 1); this config trains it "
            "(visual_encoder_lora or freeze_visual_encoder=False), so its features change every step"
        )
    # VisionFeatureCache's keyword arguments without a `type` (the dataset builds it): a config holding them
    # can still be dumped by the Runner
    cfg.train_dataloader.dataset.feature_cache = dict(
        cache_dir=str(cache_dir),
        visual_encoder=model.visual_encoder,
        visual_select_layer=model.get("visual_select_layer", -2),
        dtype=dtype,
        device=device,
        chunk_size=model.get("vision_chunk_size", 16),
    )
    return cfg
