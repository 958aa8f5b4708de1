"""xtuner's adapter layout for a trained Video-CCAM model (what ``xtuner convert pth_to_hf`` writes).

``llm_adapter/`` and ``visual_encoder_adapter/`` (PEFT) when those towers were trained with LoRA, the full LLM +
tokenizer in the folder itself / ``visual_encoder/`` + image processor when they were unfrozen without LoRA, and
``projector/`` (a self-contained ``trust_remote_code`` model), as xtuner's ``LLaVAModel.to_xtuner_llava``. Only
trained weights are written, so it works on a model whose frozen base weights are on the meta device
(design.md section 5).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from mmengine.logging import print_log
from torch import nn

from videoccam.config import build_image_processor, build_tokenizer
from videoccam.export.hf_model import loaded_dtype_state
from videoccam.export.remote_code import copy_code, has_own_code, own_auto_map, write_auto_map

if TYPE_CHECKING:  # annotations only (no import cycle with the training model)
    from videoccam.model.videoccam_model import VideoCCAMModel

__all__ = ["save_projector", "save_xtuner_layout"]


def _cast_trainable(module: nn.Module, dtype: torch.dtype | None) -> dict[str, torch.Tensor] | None:
    """``module.state_dict()`` with its trainable tensors cast to ``dtype`` (None: no state dict override).

    Only the trained tensors are cast: frozen base weights may be on the meta device and are not saved by an
    adapter ``save_pretrained`` anyway.
    """
    if dtype is None:
        return None
    trainable = {name for name, p in module.named_parameters() if p.requires_grad}
    return {k: (v.to(dtype) if k in trainable and v.is_floating_point() else v) for k, v in module.state_dict().items()}


def _loaded_or_fp32(model: nn.Module, part: str, fp32: bool) -> dict[str, torch.Tensor]:
    """``model.<part>.state_dict()`` in float32 (``fp32``) or in its loaded dtypes (:func:`loaded_dtype_state`)."""
    state = getattr(model, part).state_dict()
    if fp32:
        return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    return loaded_dtype_state(model, part, state)


def save_xtuner_layout(
    model: VideoCCAMModel,
    cfg: Any,
    save_dir: str | os.PathLike,
    fp32: bool = False,
    save_pretrained_kwargs: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Write xtuner's LLaVA layout (``LLaVAModel.to_xtuner_llava``) for a Video-CCAM model.

    ``llm_adapter/`` (PEFT) if the LLM has LoRA, else the full LLM + tokenizer in ``save_dir`` if the LLM was
    unfrozen; ``visual_encoder_adapter/`` if SigLIP has LoRA, else ``visual_encoder/`` + image processor if it
    was unfrozen; always ``projector/`` (config + weights + ``ccam_projector.py``, loadable alone with
    ``AutoModel.from_pretrained(dir, trust_remote_code=True)``). Only trained weights are read, so base weights
    may be on the meta device. As in xtuner, the LLM part is saved in float16 unless ``fp32``; the vision part
    and the projector in the dtype they were loaded in (the vision tower's for the projector; their fp32
    training copies rounded to it: :func:`loaded_dtype_state`), or float32 with ``fp32``; ``model`` itself is
    not modified.

    Returns:
        the folders written.
    """
    save_dir = Path(save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    kwargs = dict(save_pretrained_kwargs or {})
    llm_dtype = None if fp32 else torch.float16
    written: list[Path] = []

    if model.use_llm_lora:
        path = save_dir / "llm_adapter"
        print_log(f"saving the LLM adapter to {path}", "current")
        model.llm.save_pretrained(str(path), state_dict=_cast_trainable(model.llm, llm_dtype), **kwargs)
        written.append(path)
    elif not model.freeze_llm:
        print_log(f"saving the LLM and its tokenizer to {save_dir}", "current")
        build_tokenizer(cfg).save_pretrained(str(save_dir))
        model.llm.save_pretrained(str(save_dir), state_dict=_cast_trainable(model.llm, llm_dtype), **kwargs)
        written.append(save_dir)

    if model.use_visual_encoder_lora:
        path = save_dir / "visual_encoder_adapter"
        print_log(f"saving the visual encoder adapter to {path}", "current")
        model.visual_encoder.save_pretrained(str(path), **kwargs)
        written.append(path)
    elif not model.freeze_visual_encoder:
        path = save_dir / "visual_encoder"
        print_log(f"saving the visual encoder and its image processor to {path}", "current")
        build_image_processor(cfg).save_pretrained(str(path))
        model.visual_encoder.save_pretrained(str(path), state_dict=_loaded_or_fp32(model, "visual_encoder", fp32),
                                             **kwargs)
        written.append(path)

    path = save_dir / "projector"
    print_log(f"saving the projector to {path}", "current")
    save_projector(model.projector, path, _loaded_or_fp32(model, "projector", fp32), **kwargs)
    written.append(path)
    return written


def save_projector(projector: nn.Module, path: str | os.PathLike, state_dict: Mapping[str, torch.Tensor],
                   **save_pretrained_kwargs: Any) -> Path:  # fmt: skip
    """``projector.save_pretrained`` into ``path``, with the projector's own code when it has one (a released
    projector: its files and an ``auto_map`` to them), so ``AutoModel.from_pretrained(path,
    trust_remote_code=True)`` loads it where this package is not installed."""
    path = Path(path)
    projector.save_pretrained(str(path), state_dict=dict(state_dict), **save_pretrained_kwargs)
    if has_own_code(projector):
        copy_code(projector, path)
        write_auto_map(path / "config.json", own_auto_map(projector))
    return path
