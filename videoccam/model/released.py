"""Builders that start a fine-tuning from a released Video-CCAM model, through the release's own code.

The released checkpoints (design.md section 8) come in two layouts, both read here from a local folder
(``huggingface-cli download JaronTHU/Video-CCAM-4B --local-dir DIR`` first):

* **v1.0 / v1.1, xtuner's layout**: ``llm_adapter/`` and ``visual_encoder_adapter/`` (PEFT LoRA of a base LLM and
  of SigLIP, downloaded separately) and ``projector/`` (its own ``configuration_*.py`` / ``modeling_*.py``). As
  upstream's v1.0 loader does: the base model + ``PeftModel.from_pretrained(base, adapter)``, and
  ``AutoModel.from_pretrained("projector", trust_remote_code=True)``, called ``projector(features,
  split_sizes)``. The adapters are loaded trainable and train further (no new adapters are added).
* **v1.2, one folder**: ``config.json`` whose ``auto_map`` names the release's own ``modeling_*.py``. The model is
  built with that code on the meta device, its LLM, vision tower and projector are found by type and role
  (:func:`find_parts`), and each builder loads only its part's weights (the part's own class and parameter
  names, so the LLM and the vision tower load as ordinary ``from_pretrained`` models and the projector as
  itself). New LoRA adapters train on the LLM and the vision tower, as in stage 2.

Nothing is re-mapped by guessed key names: the released projector keeps its class and parameter names, and the
exporters (:mod:`videoccam.export.released_layout`) write them back where they came from. Use the builders in
a config (``configs/tiny/videoccam_tiny_qwen2_finetune_released.py``, ``configs/released/``)::

    model = dict(type=VideoCCAMModel,
                 llm=dict(type=released_llm, released_path=path, llm_name_or_path=llm, torch_dtype=...),
                 visual_encoder=dict(type=released_visual_encoder, released_path=path, visual_encoder_name_or_path=vit),
                 projector=dict(type=released_projector, released_path=path), ...)
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, PreTrainedModel

from videoccam.model.from_hf import load_videoccam_weights

__all__ = [
    "ROLES",
    "XTUNER_LAYOUT",
    "FOLDER_LAYOUT",
    "adapter_state",
    "build_released_skeleton",
    "find_parts",
    "released_folder_part",
    "released_layout",
    "released_llm",
    "released_projector",
    "released_visual_encoder",
]

XTUNER_LAYOUT = "xtuner"  # v1.0 / v1.1
FOLDER_LAYOUT = "folder"  # v1.2
ROLES = ("llm", "visual_encoder", "projector")
LLM_ADAPTER, VISION_ADAPTER, PROJECTOR = "llm_adapter", "visual_encoder_adapter", "projector"


def released_layout(released_path: str | os.PathLike) -> str:
    """Which released layout ``released_path`` holds: :data:`XTUNER_LAYOUT` or :data:`FOLDER_LAYOUT`.

    Raises:
        FileNotFoundError: if it is not a local folder.
        ValueError: if it is neither layout (the message lists what the folder holds).
    """
    folder = Path(released_path)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"released model folder {str(released_path)!r} not found; download the release first, e.g. "
            "`huggingface-cli download JaronTHU/Video-CCAM-4B --local-dir DIR`, and set released_path=DIR"
        )
    if (folder / PROJECTOR / "config.json").is_file():
        return XTUNER_LAYOUT
    config = folder / "config.json"
    if config.is_file() and "AutoModel" in (json.loads(config.read_text()).get("auto_map") or {}):
        return FOLDER_LAYOUT
    raise ValueError(
        f"{folder} is not a released Video-CCAM model: expected {PROJECTOR}/config.json (v1.0/v1.1: with "
        f"{LLM_ADAPTER}/ and {VISION_ADAPTER}/) or a config.json with an auto_map to the model's own code (v1.2); "
        f"found {sorted(p.name for p in folder.iterdir())}"
    )


def _require(released_path: str | os.PathLike, layout: str) -> Path:
    found = released_layout(released_path)
    if found != layout:
        names = {XTUNER_LAYOUT: "v1.0/v1.1 (llm_adapter/, visual_encoder_adapter/, projector/)",
                 FOLDER_LAYOUT: "v1.2 (one folder with config.json and auto_map)"}  # fmt: skip
        raise ValueError(f"{released_path} holds the {names[found]} layout; this builder reads the {names[layout]} one")
    return Path(released_path)


# ----------------------------------------------------------------------------------------------------------------
# v1.0 / v1.1: xtuner's layout
# ----------------------------------------------------------------------------------------------------------------
def _with_adapter(base: PreTrainedModel, adapter: Path) -> nn.Module:
    """``PeftModel.from_pretrained(base, adapter)`` with the adapters trainable (the base frozen by PEFT)."""
    from peft import PeftModel

    if not (adapter / "adapter_config.json").is_file():
        raise FileNotFoundError(f"{adapter} holds no adapter_config.json (a PEFT adapter of the released model)")
    return PeftModel.from_pretrained(base, str(adapter), is_trainable=True)


def released_llm(released_path: str | os.PathLike, llm_name_or_path: str, **from_pretrained_kwargs: Any) -> nn.Module:
    """The base LLM with the release's ``llm_adapter/`` (v1.0 / v1.1), adapters trainable.

    Args:
        released_path: the released folder.
        llm_name_or_path: its base LLM (e.g. ``microsoft/Phi-3-mini-4k-instruct`` for Video-CCAM-4B).
        **from_pretrained_kwargs: ``AutoModelForCausalLM.from_pretrained`` arguments (``torch_dtype``,
            ``attn_implementation``, ...).

    Returns:
        a ``peft.PeftModel``; ``VideoCCAMModel`` keeps training its adapters (set ``llm_lora=None``).
    """
    folder = _require(released_path, XTUNER_LAYOUT)
    base = AutoModelForCausalLM.from_pretrained(llm_name_or_path, **from_pretrained_kwargs)
    return _with_adapter(base, folder / LLM_ADAPTER)


def released_visual_encoder(
    released_path: str | os.PathLike, visual_encoder_name_or_path: str, **from_pretrained_kwargs: Any
) -> nn.Module:
    """Base SigLIP with the release's ``visual_encoder_adapter/`` (v1.0 / v1.1), adapters trainable.

    Args:
        released_path: the released folder.
        visual_encoder_name_or_path: the base vision tower (``google/siglip-so400m-patch14-384``).
        **from_pretrained_kwargs: ``AutoModel.from_pretrained`` arguments.
    """
    folder = _require(released_path, XTUNER_LAYOUT)
    base = AutoModel.from_pretrained(visual_encoder_name_or_path, **from_pretrained_kwargs)
    return _with_adapter(base, folder / VISION_ADAPTER)


def released_projector(
    released_path: str | os.PathLike, torch_dtype: torch.dtype | None = None, **config_overrides: Any
) -> nn.Module:
    """The release's ``projector/``, loaded with its own code (``AutoModel``, ``trust_remote_code=True``).

    Args:
        released_path: the released folder (v1.0 / v1.1 layout).
        torch_dtype: dtype to load it in (None: as saved).
        **config_overrides: fields of the projector's own config to change, e.g. ``dropout=0.0``; each must
            exist in its config.json (the projector's field names, not this project's).

    Raises:
        ValueError: for an override the projector's config does not have.
    """
    folder = _require(released_path, XTUNER_LAYOUT) / PROJECTOR
    kwargs: dict[str, Any] = {}
    if config_overrides:
        config = AutoConfig.from_pretrained(str(folder), trust_remote_code=True)
        unknown = sorted(k for k in config_overrides if not hasattr(config, k))
        if unknown:
            raise ValueError(f"the projector config of {folder} has no field(s) {unknown}; its fields: "
                             f"{sorted(config.to_diff_dict())}")  # fmt: skip
        for key, value in config_overrides.items():
            setattr(config, key, value)
        kwargs["config"] = config
    if torch_dtype is not None:
        kwargs["torch_dtype"] = torch_dtype
    return AutoModel.from_pretrained(str(folder), trust_remote_code=True, **kwargs)


# ----------------------------------------------------------------------------------------------------------------
# v1.2: one folder with the model's own code
# ----------------------------------------------------------------------------------------------------------------
def _describe(name: str, module: nn.Module) -> str:
    count = sum(p.numel() for p in module.parameters())
    return f"{name}: {type(module).__name__} ({count:,} parameters)"


def _role(module: nn.Module) -> str | None:
    """The role a top-level submodule plays, from what it is (never from its name); None if it has no weights."""
    if next(module.parameters(), None) is None:
        return None
    if isinstance(module, PreTrainedModel):
        if module.get_output_embeddings() is not None and module.can_generate():
            return "llm"  # a causal LM: an output head and generate()
        if module.main_input_name == "pixel_values":
            return "visual_encoder"  # a vision tower (SiglipVisionModel)
    return "projector"  # whatever else carries weights


def find_parts(model: nn.Module, where: str = "the released model") -> dict[str, tuple[str, nn.Module]]:
    """The LLM, the vision tower and the projector among ``model``'s top-level submodules, by type and role.

    The LLM is the causal LM (a ``PreTrainedModel`` with an output head that can generate), the vision tower the
    ``PreTrainedModel`` whose main input is ``pixel_values``, the projector the one other submodule with weights.

    Returns:
        ``{"llm": (attribute, module), "visual_encoder": (...), "projector": (...)}``.

    Raises:
        ValueError: unless exactly one submodule plays each role; the message lists every submodule found.
    """
    found: dict[str, list[tuple[str, nn.Module]]] = {role: [] for role in ROLES}
    lines = []
    for name, child in model.named_children():
        role = _role(child)
        lines.append(f"{_describe(name, child)} -> {role or 'no weights'}")
        if role is not None:
            found[role].append((name, child))
    if any(len(parts) != 1 for parts in found.values()):
        raise ValueError(
            f"{where} ({type(model).__name__}) is not a Video-CCAM model this loader recognises: it needs exactly one "
            "causal LM (a PreTrainedModel with an output head that can generate), one vision tower (a "
            "PreTrainedModel whose main input is pixel_values) and one projector (any other submodule with weights) "
            "among its top-level submodules; found:\n  " + "\n  ".join(lines or ["(no submodules)"])
        )
    return {role: parts[0] for role, parts in found.items()}


def build_released_skeleton(released_path: str | os.PathLike) -> nn.Module:
    """The v1.2 model built by its own code on the meta device (no weights read): for :func:`find_parts`."""
    from accelerate import init_empty_weights

    folder = _require(released_path, FOLDER_LAYOUT)
    config = AutoConfig.from_pretrained(str(folder), trust_remote_code=True)
    with init_empty_weights(include_buffers=False):
        return AutoModel.from_config(config, trust_remote_code=True)


def released_folder_part(released_path: str | os.PathLike, role: str, **from_pretrained_kwargs: Any) -> nn.Module:
    """One part (``llm``, ``visual_encoder`` or ``projector``) of a v1.2 folder, with its weights.

    The model is built by its own code on the meta device; the part found for ``role`` (:func:`find_parts`) is
    loaded from the folder's weights under its own attribute prefix: a ``PreTrainedModel`` part through its class'
    ``from_pretrained`` (dtype, attention implementation, tied weights, DeepSpeed ZeRO-3 as for any model), any
    other module with ``load_state_dict`` (strict). Only that part's tensors are read.

    Args:
        released_path: the v1.2 folder.
        role: ``"llm"``, ``"visual_encoder"`` or ``"projector"``.
        **from_pretrained_kwargs: ``torch_dtype``, ``attn_implementation``, ... (a plain-module projector takes
            ``torch_dtype`` only).

    Raises:
        ValueError: for an unknown role, a folder whose parts are not recognised, or weights that do not fit.
    """
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    folder = Path(released_path)
    skeleton = build_released_skeleton(folder)
    name, part = find_parts(skeleton, str(folder))[role]
    state = load_videoccam_weights(folder, name)
    if isinstance(part, PreTrainedModel):
        return type(part).from_pretrained(None, config=part.config, state_dict=state, **from_pretrained_kwargs)
    dtype = from_pretrained_kwargs.pop("torch_dtype", None)
    if from_pretrained_kwargs:
        raise ValueError(f"the {role} of {folder} is a plain {type(part).__name__}; it takes only torch_dtype, got "
                         f"{sorted(from_pretrained_kwargs)}")  # fmt: skip
    part.load_state_dict(state, strict=True, assign=True)
    return part if dtype is None else part.to(dtype)


def adapter_state(module: nn.Module) -> Mapping[str, torch.Tensor]:
    """The adapter tensors of a PEFT model, keyed as in its saved ``adapter_model.safetensors``."""
    from peft import get_peft_model_state_dict

    return get_peft_model_state_dict(module)
