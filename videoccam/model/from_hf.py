"""Builders that start a (stage-2 or custom) fine-tuning from a converted single-folder Video-CCAM model.

Use them in a config in place of the usual ``from_pretrained`` builders (see
``configs/tiny/videoccam_tiny_qwen2_finetune_from_hf.py``)::

    model = dict(
        type=VideoCCAMModel,
        llm=dict(type=llm_from_videoccam, path=hf_path, torch_dtype=torch.bfloat16),
        visual_encoder=dict(type=visual_encoder_from_videoccam, path=hf_path, torch_dtype=torch.bfloat16),
        projector=dict(type=projector_from_videoccam, path=hf_path),
        ...)

Each builder reads only its own tensors (``llm.*``, ``visual_encoder.*``, ``projector.*``) from the folder's
safetensors shards, so the LLM, the vision tower and the projector are never in memory twice. The folder's
tokenizer and ``preprocessor_config.json`` load with ``AutoTokenizer`` / ``SiglipImageProcessor.from_pretrained``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModel, AutoModelForCausalLM, PreTrainedModel

from videoccam.model.hf.ccam_projector import CCAMProjector, CCAMProjectorConfig
from videoccam.model.hf.configuration_videoccam import VideoCCAMConfig

__all__ = [
    "llm_from_videoccam",
    "load_videoccam_config",
    "load_videoccam_weights",
    "projector_from_videoccam",
    "visual_encoder_from_videoccam",
]


def _folder(path: str | os.PathLike) -> Path:
    folder = Path(path)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"{folder} is not a converted Video-CCAM folder (no config.json); write one with "
            "`python tools/convert_to_hf.py CONFIG CHECKPOINT OUT_DIR`"
        )
    return folder


def load_videoccam_config(path: str | os.PathLike) -> VideoCCAMConfig:
    """The :class:`VideoCCAMConfig` of a converted folder (read with this package's class, no remote code).

    Raises:
        FileNotFoundError: if ``path`` has no ``config.json``.
        ValueError: if the folder is not a Video-CCAM model.
    """
    folder = _folder(path)
    model_type = json.loads((folder / "config.json").read_text()).get("model_type")
    if model_type != VideoCCAMConfig.model_type:
        raise ValueError(
            f"{folder / 'config.json'} has model_type={model_type!r}, expected {VideoCCAMConfig.model_type!r}"
        )
    return VideoCCAMConfig.from_pretrained(str(folder))


def _weight_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text())["weight_map"]
        return [folder / name for name in sorted(set(weight_map.values()))]
    single = folder / "model.safetensors"
    if single.is_file():
        return [single]
    raise FileNotFoundError(f"{folder} has neither model.safetensors nor model.safetensors.index.json")


def load_videoccam_weights(path: str | os.PathLike, submodule: str) -> dict[str, torch.Tensor]:
    """The tensors of one submodule (``llm``, ``visual_encoder`` or ``projector``) of a converted folder.

    Returns:
        a state dict keyed as the submodule's own ``state_dict`` (the ``"<submodule>."`` prefix removed).

    Raises:
        ValueError: if the folder holds no tensor of that submodule.
    """
    from safetensors import safe_open

    folder = _folder(path)
    prefix = submodule + "."
    state: dict[str, torch.Tensor] = {}
    for file in _weight_files(folder):
        with safe_open(str(file), framework="pt", device="cpu") as f:
            for key in f.keys():
                if key.startswith(prefix):
                    state[key[len(prefix) :]] = f.get_tensor(key)
    if not state:
        raise ValueError(f"{folder} holds no weights of `{submodule}` (no key starts with {prefix!r})")
    return state


def llm_from_videoccam(path: str | os.PathLike, **from_pretrained_kwargs: Any) -> PreTrainedModel:
    """The LLM (LoRA already merged) of a converted folder, as ``AutoModelForCausalLM``.

    Args:
        path: the converted folder.
        **from_pretrained_kwargs: passed to ``AutoModelForCausalLM.from_pretrained`` (``torch_dtype``,
            ``attn_implementation``, ``quantization_config`` for QLoRA, ...).
    """
    config = load_videoccam_config(path).text_config
    state = load_videoccam_weights(path, "llm")
    return AutoModelForCausalLM.from_pretrained(None, config=config, state_dict=state, **from_pretrained_kwargs)


def visual_encoder_from_videoccam(path: str | os.PathLike, **from_pretrained_kwargs: Any) -> PreTrainedModel:
    """The vision tower (LoRA already merged) of a converted folder, as ``AutoModel`` (``SiglipVisionModel``).

    Args:
        path: the converted folder.
        **from_pretrained_kwargs: passed to ``AutoModel.from_pretrained`` (``torch_dtype``, ...).
    """
    config = load_videoccam_config(path).vision_config
    state = load_videoccam_weights(path, "visual_encoder")
    return AutoModel.from_pretrained(None, config=config, state_dict=state, **from_pretrained_kwargs)


def projector_from_videoccam(
    path: str | os.PathLike, torch_dtype: torch.dtype | None = None, **config_overrides: Any
) -> CCAMProjector:
    """The CCAM projector of a converted folder.

    Args:
        path: the converted folder.
        torch_dtype: cast the weights (None keeps the saved dtype; ``VideoCCAMModel`` trains the projector in
            fp32 when the vision tower is bf16/fp16, and in the vision tower's dtype otherwise).
        **config_overrides: :class:`CCAMProjectorConfig` fields to change for fine-tuning, e.g. ``dropout=0.0``
            or ``frame_chunk_size=4``; fields that shape weights (``num_queries``, sizes, ``depth``) cannot change.

    Raises:
        ValueError: for an unknown field, or an override that changes the shape of a weight.
    """
    saved = load_videoccam_config(path).projector_config
    fields = saved.to_dict()
    unknown = sorted(k for k in config_overrides if k not in fields)
    if unknown:
        raise ValueError(f"unknown CCAMProjectorConfig fields {unknown}; known: {sorted(fields)}")
    fields.update(config_overrides)
    for key in ("model_type", "transformers_version", "auto_map", "architectures"):
        fields.pop(key, None)
    config = CCAMProjectorConfig(**fields)
    projector = CCAMProjector(config)
    state = load_videoccam_weights(path, "projector")
    try:
        projector.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ValueError(
            f"the projector weights in {path} do not fit the config with overrides {config_overrides}: {e}"
        ) from e
    if torch_dtype is not None:
        projector.to(torch_dtype)
    return projector
