"""Write the single-folder Hugging Face format (how Video-CCAM v1.2 was released; design.md section 5).

Safetensors shards of the merged model (:func:`videoccam.export.hf_model.build_hf_model`), ``config.json`` with
``auto_map`` to the self-contained files of :mod:`videoccam.model.hf` copied beside it, the tokenizer with the
``<image>``/``<video>`` tokens and a chat template that reproduces training's prompt ids
(:func:`videoccam.export.tokenizer.prepare_tokenizer`), ``preprocessor_config.json`` and
``generation_config.json`` whose EOS ids are the template's stop words.

:func:`write_hf_folder` and :func:`write_safetensors` need only torch, transformers, safetensors and the package's
self-contained model files (``tools/gpu_check.py`` writes its exports with them where mmengine and xtuner are not
installed); :func:`save_hf_folder`, which reads an mmengine config, imports the training stack when called.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from tqdm import tqdm

from videoccam.export.remote_code import copy_code
from videoccam.model.hf.modeling_videoccam import VideoCCAMForCausalLM

if TYPE_CHECKING:  # annotations only (no import cycle with the training model)
    from videoccam.model.videoccam_model import VideoCCAMModel

__all__ = ["save_hf_folder", "write_hf_folder", "write_safetensors"]

DEFAULT_MAX_SHARD_SIZE = "5GB"


def _tied_weight_names(model: nn.Module) -> set[str]:
    """Names that a model re-ties on load (each submodule's ``_tied_weights_keys``, prefixed)."""
    names: set[str] = set()
    for prefix, module in model.named_modules():
        for key in getattr(module, "_tied_weights_keys", None) or []:
            names.add(f"{prefix}.{key}" if prefix else key)
    return names


def _deduplicated_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """``model.state_dict()`` without the tied copies (safetensors refuses shared storage)."""
    state = model.state_dict()
    tied = _tied_weight_names(model)
    by_storage: dict[tuple, list[str]] = {}
    for name, tensor in state.items():
        key = (tensor.device, tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        by_storage.setdefault(key, []).append(name)
    for names in by_storage.values():
        if len(names) < 2:
            continue
        keep = next((n for n in names if n not in tied), names[0])
        for name in names:
            if name == keep:
                continue
            if name in tied:
                del state[name]  # from_pretrained ties it again
            else:
                state[name] = state[name].clone()
    return state


def write_safetensors(
    state: Mapping[str, torch.Tensor], save_dir: str | os.PathLike, max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE
) -> list[Path]:
    """Write ``state`` as ``model.safetensors`` or, above ``max_shard_size``, shards + ``model.safetensors.index.json``.

    Earlier weight files in ``save_dir`` are removed first (a smaller re-export must not leave old shards that
    ``from_pretrained`` would read). Returns the files written.
    """
    from huggingface_hub import split_torch_state_dict_into_shards
    from safetensors.torch import save_file

    save_dir = Path(save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    for stale in [*save_dir.glob("model*.safetensors"), save_dir / "model.safetensors.index.json"]:
        if stale.is_file():
            stale.unlink()
    split = split_torch_state_dict_into_shards(
        dict(state), filename_pattern="model{suffix}.safetensors", max_shard_size=max_shard_size
    )
    written = []
    total = sum(t.numel() * t.element_size() for t in state.values())
    with tqdm(total=total, desc=f"writing weights to {save_dir}", unit="B", unit_scale=True) as bar:
        for filename, names in split.filename_to_tensors.items():
            shard = {name: state[name].contiguous() for name in names}
            save_file(shard, str(save_dir / filename), metadata={"format": "pt"})
            written.append(save_dir / filename)
            bar.update(sum(t.numel() * t.element_size() for t in shard.values()))
    if split.is_sharded:
        index = {"metadata": split.metadata, "weight_map": split.tensor_to_filename}
        (save_dir / "model.safetensors.index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
        written.append(save_dir / "model.safetensors.index.json")
    return written


def write_hf_folder(
    hf_model: VideoCCAMForCausalLM,
    tokenizer: Any,
    image_processor: Any,
    save_dir: str | os.PathLike,
    max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE,
) -> list[Path]:
    """Write a :class:`VideoCCAMForCausalLM` and its processors as one Hugging Face folder.

    Args:
        hf_model: the model (e.g. from :func:`build_hf_model`).
        tokenizer: the inference tokenizer (from :func:`prepare_tokenizer`).
        image_processor: the vision tower's image processor.
        save_dir: output folder (created; earlier weight files in it are replaced).
        max_shard_size: largest safetensors shard ("5GB", or bytes).

    Returns:
        the files written.
    """
    from transformers.dynamic_module_utils import custom_object_save

    save_dir = Path(save_dir)
    write_safetensors(_deduplicated_state_dict(hf_model), save_dir, max_shard_size)

    config = hf_model.config
    model_module = type(hf_model).__module__.split(".")[-1]
    config_module = type(config).__module__.split(".")[-1]
    model_class = f"{model_module}.{type(hf_model).__name__}"
    config.auto_map = {
        "AutoConfig": f"{config_module}.{type(config).__name__}",
        "AutoModel": model_class,
        "AutoModelForCausalLM": model_class,
    }
    custom_object_save(hf_model, save_dir, config=None)  # copies modeling + its relative imports
    if config.projector_auto_map:  # a projector with its own code (a released one): its files go along
        copy_code(hf_model.projector, save_dir)
    config.save_pretrained(save_dir)
    hf_model.generation_config.save_pretrained(save_dir)
    tokenizer.save_pretrained(save_dir)
    image_processor.save_pretrained(save_dir)
    return sorted(p for p in save_dir.iterdir() if p.is_file())


def save_hf_folder(
    model: VideoCCAMModel,
    cfg: Any,
    save_dir: str | os.PathLike,
    fp32: bool = False,
    save_pretrained_kwargs: Mapping[str, Any] | None = None,
    dtype: torch.dtype | None = None,
    merge_inplace: bool = False,
) -> list[Path]:
    """Write the merged single-folder Hugging Face model (design.md section 5).

    Args:
        model: the trained model, with real base weights (not built under ``init_empty_weights``).
        cfg: its mmengine config (prompt template, tokenizer and image processor builders).
        save_dir: output folder.
        fp32: save in float32 (same as ``dtype=torch.float32``).
        save_pretrained_kwargs: ``max_shard_size`` (default "5GB"); ``safe_serialization`` is accepted and
            ignored (the folder is always safetensors).
        dtype: dtype of the saved weights; None keeps the dtypes the base weights were loaded in (trainable
            weights, kept in fp32 during training, are rounded to them).
        merge_inplace: merge the LoRA adapters inside ``model`` (less memory; for one-shot conversion).

    Returns:
        the files written.

    Raises:
        ValueError: if base weights are on the meta device (``xtuner convert pth_to_hf``): use
            ``tools/convert_to_hf.py``; or for unsupported ``save_pretrained_kwargs``.
    """
    from mmengine.logging import print_log

    from videoccam.config import build_image_processor, build_tokenizer, template_from_cfg
    from videoccam.export.hf_model import build_hf_model, check_not_meta
    from videoccam.export.tokenizer import prepare_tokenizer

    kwargs = dict(save_pretrained_kwargs or {})
    max_shard_size = kwargs.pop("max_shard_size", None) or DEFAULT_MAX_SHARD_SIZE
    kwargs.pop("safe_serialization", None)
    if kwargs:
        raise ValueError(f"save_hf_folder does not support the save_pretrained arguments {sorted(kwargs)}")
    if fp32:
        if dtype not in (None, torch.float32):
            raise ValueError(f"fp32=True contradicts dtype={dtype}")
        dtype = torch.float32
    check_not_meta(model)

    template = template_from_cfg(cfg)
    tokenizer = prepare_tokenizer(build_tokenizer(cfg), template)
    image_processor = build_image_processor(cfg)
    print_log("building the merged Hugging Face model", "current")
    hf_model = build_hf_model(model, template, tokenizer, merge_inplace=merge_inplace, dtype=dtype)
    files = write_hf_folder(hf_model, tokenizer, image_processor, save_dir, max_shard_size=max_shard_size)
    print_log(f"saved the Hugging Face model to {save_dir}", "current")
    return files
