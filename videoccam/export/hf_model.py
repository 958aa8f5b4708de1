"""A trained :class:`~videoccam.model.videoccam_model.VideoCCAMModel` -> the single-folder Hugging Face model.

:func:`build_hf_model` merges the LoRA adapters (:mod:`videoccam.export.lora_merge`) and assembles a
:class:`~videoccam.model.hf.modeling_videoccam.VideoCCAMForCausalLM` that computes the same logits, in memory;
:mod:`videoccam.export.hf_folder` writes it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from videoccam.export.lora_merge import base_model, merged_state_dict
from videoccam.export.remote_code import has_own_code, own_auto_map
from videoccam.export.tokenizer import make_generation_config
from videoccam.model.hf.configuration_videoccam import VideoCCAMConfig
from videoccam.model.hf.constants import IMAGE_TOKEN_INDEX, MEDIA_TOKENS
from videoccam.model.hf.modeling_videoccam import VideoCCAMForCausalLM

if TYPE_CHECKING:  # annotations only: the training model imports the exporters lazily (no import cycle)
    from videoccam.model.videoccam_model import VideoCCAMModel

__all__ = ["build_hf_model", "check_not_meta", "loaded_dtype_state"]

CONVERT_TOOL = "tools/convert_to_hf.py"


def loaded_dtype_state(model: nn.Module, prefix: str, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` (keys relative to ``model.<prefix>``) with the fp32 master weights rounded to their loaded dtype.

    :class:`VideoCCAMModel` trains its bf16/fp16 trainable weights in fp32 and records the dtype each had in
    ``model.weight_dtypes`` (the projector: the vision tower's dtype). Exports that keep "the training dtypes"
    write those, so a bf16 recipe still gives a bf16 model; tensors not recorded are returned unchanged.
    """
    loaded = getattr(model, "weight_dtypes", None) or {}
    out = {}
    for key, value in state.items():
        dtype = loaded.get(f"{prefix}.{key}")
        out[key] = value.to(dtype) if dtype is not None and value.is_floating_point() else value
    return out


def _meta_parameters(model: nn.Module) -> list[str]:
    return [name for name, p in model.named_parameters() if p.is_meta]


def check_not_meta(model: nn.Module) -> None:
    """Raise if some weights of ``model`` are on the meta device (built as ``xtuner convert pth_to_hf`` does).

    Raises:
        ValueError: naming the first such weight and the tool that loads the base weights.
    """
    meta = _meta_parameters(model)
    if meta:
        raise ValueError(
            f"{len(meta)} weights of the model are on the meta device (first: {meta[0]}): it was built with empty "
            "base weights, as `xtuner convert pth_to_hf` does, and only the trained weights were loaded, so the "
            "merged single-folder Hugging Face format cannot be written from it. Run "
            f"`python {CONVERT_TOOL} CONFIG CHECKPOINT OUT_DIR` (it loads the base weights), or use "
            "`--save-format xtuner` with `xtuner convert pth_to_hf` for the adapter layout."
        )


def build_hf_model(
    model: VideoCCAMModel,
    template: Any,
    tokenizer: Any,
    merge_inplace: bool = False,
    dtype: torch.dtype | None = None,
) -> VideoCCAMForCausalLM:
    """The single-folder Hugging Face model equivalent to a trained :class:`VideoCCAMModel`.

    LoRA adapters are merged into the LLM and the vision tower; the config carries the LLM and vision configs,
    the projector config, ``visual_select_layer`` and ``vision_chunk_size`` of the training model, so the
    result computes the same logits. Weights that need no merging are shared with ``model``, not copied.

    Args:
        model: the training model with real (not meta) weights.
        template: the xtuner prompt template it was trained with (for the generation config's stop tokens).
        tokenizer: its tokenizer (stop word ids, pad id).
        merge_inplace: merge the adapters inside ``model`` instead of on per-layer copies (saves memory; see
            :func:`merged_state_dict`).
        dtype: dtype of every weight of the result (the fp32 training weights are cast from their fp32 values).
            None: the dtypes the base weights were loaded in; the trainable weights, fp32 during training, are
            rounded to them (:func:`loaded_dtype_state`).

    Returns:
        a :class:`VideoCCAMForCausalLM` in eval mode; its configs' ``torch_dtype`` is ``dtype`` if given.

    Raises:
        ValueError: if some weights of ``model`` are on the meta device.
    """
    from accelerate import init_empty_weights

    check_not_meta(model)
    llm, vision = base_model(model.llm), base_model(model.visual_encoder)
    text_config = copy.deepcopy(llm.config)
    text_config.use_cache = True
    if getattr(text_config, "quantization_config", None) is not None:
        del text_config.quantization_config  # the merged weights are dense
    vision_config = copy.deepcopy(vision.config)
    # a projector with its own code (a released one) keeps it: the folder gets its files and loads it from there
    own_code = has_own_code(model.projector)
    image_token_id, video_token_id = tokenizer.convert_tokens_to_ids(list(MEDIA_TOKENS))
    config = VideoCCAMConfig(
        text_config=text_config,
        vision_config=vision_config,
        projector_config=copy.deepcopy(model.projector.config),
        projector_auto_map=own_auto_map(model.projector) if own_code else None,
        visual_select_layer=model.visual_select_layer,
        vision_chunk_size=model.vision_chunk_size,
        image_token_index=IMAGE_TOKEN_INDEX,
        media_tokens=list(MEDIA_TOKENS),
        image_token_id=image_token_id,
        video_token_id=video_token_id,
        architectures=[VideoCCAMForCausalLM.__name__],
        torch_dtype=llm.dtype,
    )

    parts = {
        "llm": merged_state_dict(model.llm, merge_inplace, "merging LLM LoRA"),
        "visual_encoder": merged_state_dict(model.visual_encoder, merge_inplace, "merging vision LoRA"),
        "projector": model.projector.state_dict(),
    }
    state: dict[str, torch.Tensor] = {}
    for prefix, part in parts.items():
        if dtype is None:
            part = loaded_dtype_state(model, prefix, part)
        else:
            part = {k: v.to(dtype) if v.is_floating_point() else v for k, v in part.items()}
        state.update((f"{prefix}.{k}", v) for k, v in part.items())

    with init_empty_weights(include_buffers=False):
        hf_model = VideoCCAMForCausalLM(config, projector_class=type(model.projector) if own_code else None)
    expected = set(hf_model.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ValueError(
            f"the merged training weights do not fit VideoCCAMForCausalLM: missing {missing[:5]} "
            f"({len(missing)} in all), unexpected {unexpected[:5]} ({len(unexpected)} in all)"
        )
    hf_model.load_state_dict(state, strict=True, assign=True)
    hf_model.tie_weights()
    still_meta = _meta_parameters(hf_model)
    if still_meta:
        raise ValueError(f"{len(still_meta)} weights stayed on the meta device after loading (first: {still_meta[0]})")
    if dtype is not None:
        for sub_config in (hf_model.config, hf_model.config.text_config, hf_model.config.vision_config):
            sub_config.torch_dtype = dtype
    hf_model.generation_config = make_generation_config(tokenizer, template)
    return hf_model.eval()
