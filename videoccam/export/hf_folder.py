"""Export a trained :class:`VideoCCAMModel`: xtuner's adapter layout and the single-folder Hugging Face format.

Two layouts (design.md section 5):

* **xtuner layout** (:func:`save_xtuner_layout`, what ``xtuner convert pth_to_hf`` writes, as xtuner's
  ``LLaVAModel.to_xtuner_llava``): ``llm_adapter/`` and ``visual_encoder_adapter/`` (PEFT) when those towers
  were trained with LoRA, the full LLM + tokenizer in the folder itself / ``visual_encoder/`` + image processor
  when they were unfrozen without LoRA, and ``projector/`` (a self-contained ``trust_remote_code`` model). Only
  trained weights are written, so it works on a model whose frozen base weights are on the meta device.
* **single folder** (:func:`save_hf_folder`, how Video-CCAM v1.2 was released): the LoRA adapters merged into
  the LLM and SigLIP (:func:`build_hf_model`), safetensors shards, ``config.json`` with ``auto_map`` to the
  three self-contained files copied beside it, the tokenizer with the ``<image>``/``<video>`` tokens and a
  chat template that reproduces training's prompt ids (:func:`prepare_tokenizer`),
  ``preprocessor_config.json`` and ``generation_config.json`` whose EOS ids are the template's stop words.
"""

from __future__ import annotations

import copy
import json
import os
from collections import OrderedDict
from pathlib import Path
from collections.abc import Mapping
from typing import Any

import torch
from mmengine.config import Config, ConfigDict
from mmengine.logging import print_log
from torch import nn
from tqdm import tqdm
from transformers import GenerationConfig

from videoccam import xtuner_compat
from videoccam.constants import IMAGE_TOKEN_INDEX, MEDIA_TOKENS

xtuner_compat.install()

from xtuner.dataset.utils import get_bos_eos_token_ids  # noqa: E402
from xtuner.registry import BUILDER  # noqa: E402
from xtuner.utils import PROMPT_TEMPLATE  # noqa: E402

from .chat_template import xtuner_chat_template  # noqa: E402
from .configuration_videoccam import VideoCCAMConfig  # noqa: E402
from .modeling_videoccam import VideoCCAMForCausalLM  # noqa: E402
from .videoccam_model import VideoCCAMModel  # noqa: E402

__all__ = [
    "build_hf_model",
    "make_generation_config",
    "merged_state_dict",
    "prepare_tokenizer",
    "save_hf_folder",
    "save_xtuner_layout",
    "template_from_cfg",
    "write_hf_folder",
]

DEFAULT_MAX_SHARD_SIZE = "5GB"
CONVERT_TOOL = "tools/convert_to_hf.py"


# ----------------------------------------------------------------------------------------------------------------
# Config helpers
# ----------------------------------------------------------------------------------------------------------------
def _cfg_lookup(cfg: Any, *paths: str) -> Any:
    """The first of the dotted ``paths`` present in ``cfg`` (None if none is)."""
    for path in paths:
        node = cfg
        for part in path.split("."):
            if not isinstance(node, (dict, Config, ConfigDict)) or part not in node:
                node = None
                break
            node = node[part]
        if node is not None:
            return node
    return None


def resolve_template(template: Any) -> Mapping[str, Any]:
    """An xtuner prompt template from the template itself, its name in ``xtuner.utils.PROMPT_TEMPLATE`` or its
    import path (``"xtuner.utils.PROMPT_TEMPLATE.qwen_chat"``, as mmengine dumps configs).

    Raises:
        ValueError: for an unknown name or a value that is neither a name nor a mapping.
    """
    if isinstance(template, str):
        if template in PROMPT_TEMPLATE:
            return PROMPT_TEMPLATE[template]
        # a config dumped by mmengine (a work dir's copy) stores it as "xtuner.utils.PROMPT_TEMPLATE.qwen_chat"
        from mmengine.utils.misc import get_object_from_string

        found = get_object_from_string(template) if "." in template else None
        if not isinstance(found, Mapping):
            raise ValueError(
                f"unknown prompt template {template!r}; give a template, its import path, or one of "
                f"{', '.join(sorted(PROMPT_TEMPLATE))}"
            )
        return found
    if isinstance(template, Mapping):
        return template
    raise ValueError(f"a prompt template must be a name or a mapping (PROMPT_TEMPLATE.x), got {template!r}")


def template_from_cfg(cfg: Any) -> Mapping[str, Any]:
    """The prompt template a config trains with (``prompt_template`` or the train dataset's ``template``)."""
    template = _cfg_lookup(cfg, "prompt_template", "train_dataloader.dataset.template")
    if template is None:
        raise ValueError(
            "the config has neither `prompt_template` nor `train_dataloader.dataset.template`; the exporter needs "
            "the training prompt template to write a matching chat template"
        )
    return resolve_template(template)


def _build_from_cfg(cfg: Any, what: str) -> Any:
    node = _cfg_lookup(cfg, what, f"train_dataloader.dataset.{what}")
    if node is None:
        raise ValueError(f"the config has neither `{what}` nor `train_dataloader.dataset.{what}`")
    return BUILDER.build(node) if isinstance(node, (dict, Config, ConfigDict)) else node


def build_tokenizer(cfg: Any) -> Any:
    """The config's tokenizer (``tokenizer`` or ``train_dataloader.dataset.tokenizer``), built."""
    return _build_from_cfg(cfg, "tokenizer")


def build_image_processor(cfg: Any) -> Any:
    """The config's image processor (``image_processor`` or the train dataset's), built."""
    return _build_from_cfg(cfg, "image_processor")


# ----------------------------------------------------------------------------------------------------------------
# Tokenizer and generation config
# ----------------------------------------------------------------------------------------------------------------
def _single_token(tokenizer: Any, ids: Any, what: str) -> str | None:
    if ids is None or ids == []:
        return None
    ids = [ids] if isinstance(ids, int) else list(ids)
    if len(ids) != 1 or ids[0] is None:
        raise ValueError(
            f"xtuner's encode_fn puts the {what} ids {ids} around each turn for {type(tokenizer).__name__}; "
            "only a single token can be written into a chat template"
        )
    return tokenizer.convert_ids_to_tokens(ids[0])


def prepare_tokenizer(tokenizer: Any, template: Any) -> Any:
    """A copy of ``tokenizer`` ready for inference with the exported model.

    Adds ``<image>``/``<video>`` as special tokens if the vocabulary lacks them (their ids are never embedded:
    ``tokenize_with_media`` splits prompts on them, so the LLM's embeddings are not resized), sets a chat
    template generated from the xtuner ``template`` (with the BOS/EOS xtuner's ``encode_fn`` adds for this
    tokenizer) and pads on the left for batched generation.

    Args:
        tokenizer: the training tokenizer.
        template: xtuner prompt template (mapping or ``PROMPT_TEMPLATE`` name).

    Returns:
        the new tokenizer; ``tokenizer`` is left unchanged.
    """
    template = resolve_template(template)
    tokenizer = copy.deepcopy(tokenizer)
    vocab = tokenizer.get_vocab()
    missing = [token for token in MEDIA_TOKENS if token not in vocab]
    if missing:
        tokenizer.add_special_tokens({"additional_special_tokens": missing}, replace_additional_special_tokens=False)
    bos_ids, eos_ids = get_bos_eos_token_ids(tokenizer)
    bos_token = _single_token(tokenizer, bos_ids, "BOS")
    eos_token = None if template.get("SUFFIX_AS_EOS", False) else _single_token(tokenizer, eos_ids, "EOS")
    tokenizer.chat_template = xtuner_chat_template(template, bos_token=bos_token, eos_token=eos_token)
    tokenizer.padding_side = "left"
    return tokenizer


def _token_id(tokenizer: Any, word: str) -> int | None:
    ids = tokenizer.encode(word, add_special_tokens=False)
    return ids[0] if len(ids) == 1 else None


def make_generation_config(tokenizer: Any, template: Any) -> GenerationConfig:
    """Generation defaults of the exported model: EOS = the template's ``STOP_WORDS`` (single tokens).

    The tokenizer's own EOS is added when the template makes the model emit it (``SUFFIX_AS_EOS`` false) or
    when no stop word is a single token. ``pad_token_id`` is the tokenizer's pad (else the first EOS).

    Raises:
        ValueError: if no stop token can be determined.
    """
    template = resolve_template(template)
    eos: list[int] = []
    for word in template.get("STOP_WORDS", None) or []:
        token_id = _token_id(tokenizer, word)
        if token_id is None:
            print_log(
                f"stop word {word!r} of the prompt template is not a single token of the tokenizer; generation will "
                "not stop on it",
                "current",
            )
        elif token_id not in eos:
            eos.append(token_id)
    needs_tokenizer_eos = not template.get("SUFFIX_AS_EOS", False) or not eos
    if needs_tokenizer_eos and tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in eos:
        eos.append(tokenizer.eos_token_id)
    if not eos:
        raise ValueError("neither the prompt template's STOP_WORDS nor the tokenizer give a single-token EOS")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    return GenerationConfig(eos_token_id=eos, pad_token_id=pad, bos_token_id=tokenizer.bos_token_id)


# ----------------------------------------------------------------------------------------------------------------
# Merging adapters
# ----------------------------------------------------------------------------------------------------------------
def _base_model(module: nn.Module) -> nn.Module:
    from peft import PeftModel

    return module.get_base_model() if isinstance(module, PeftModel) else module


def _is_adapter_wrapper(module: nn.Module) -> bool:
    # the test peft's own unload uses (peft.tuners.tuners_utils.BaseTuner._unload_and_optionally_merge)
    from peft.tuners.tuners_utils import BaseTunerLayer

    return isinstance(module, BaseTunerLayer) or hasattr(module, "unload_and_optionally_merge_module")


def _merge_wrapper(module: nn.Module, inplace: bool) -> nn.Module:
    """The plain module a PEFT wrapper becomes after merging (on a copy unless ``inplace``)."""
    target = module if inplace else copy.deepcopy(module)
    if hasattr(target, "unload_and_optionally_merge_module"):
        return target.unload_and_optionally_merge_module(merge=True, safe_merge=False, adapter_names=None)
    target.merge(safe_merge=False, adapter_names=None)
    return target.get_base_layer()


def merged_state_dict(
    module: nn.Module, inplace: bool = False, desc: str = "merging adapters"
) -> OrderedDict[str, torch.Tensor]:
    """State dict of ``module`` (a PEFT model or a plain one) with every adapter merged into its base layer.

    Keys are those of the underlying base model (``model.layers.0.self_attn.q_proj.weight``), as if the adapters
    had never been added. Merging goes layer by layer through PEFT's own ``merge`` (so DoRA and
    ``modules_to_save`` follow PEFT's rules): on a copy of each wrapped layer, leaving ``module`` unchanged (the
    merged weights are new tensors: extra memory = the size of the adapted layers), or on the layer itself
    with ``inplace=True`` (no extra memory; the wrapped layers are then marked merged, so ``module`` still
    computes the same function but should not be trained further).

    Returns:
        an ordered dict of tensors; unmerged tensors share storage with ``module``.
    """
    root = _base_model(module)
    wrappers: dict[str, nn.Module] = {}
    for name, sub in root.named_modules():
        if any(name.startswith(w + ".") for w in wrappers):
            continue  # inside a wrapper (lora_A, base_layer, ...)
        if name and _is_adapter_wrapper(sub):
            wrappers[name] = sub
    state = root.state_dict()
    if not wrappers:
        return state
    merged: dict[str, dict[str, torch.Tensor]] = {}
    for name, wrapper in tqdm(wrappers.items(), desc=desc, unit="layer", leave=False):
        merged[name] = _merge_wrapper(wrapper, inplace).state_dict()

    def owner(key: str) -> str | None:
        parts = key.split(".")
        for i in range(1, len(parts)):
            prefix = ".".join(parts[:i])
            if prefix in merged:
                return prefix
        return None

    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    done: set[str] = set()
    for key, value in state.items():
        name = owner(key)
        if name is None:
            out[key] = value
        elif name not in done:
            done.add(name)
            out.update((f"{name}.{k}", v) for k, v in merged[name].items())
    return out


# ----------------------------------------------------------------------------------------------------------------
# Training model -> VideoCCAMForCausalLM
# ----------------------------------------------------------------------------------------------------------------
def _meta_parameters(model: nn.Module) -> list[str]:
    return [name for name, p in model.named_parameters() if p.is_meta]


def _check_not_meta(model: nn.Module) -> None:
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
    model: VideoCCAMModel, template: Any, tokenizer: Any, merge_inplace: bool = False
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

    Returns:
        a :class:`VideoCCAMForCausalLM` in eval mode, in the training model's dtypes.

    Raises:
        ValueError: if some weights of ``model`` are on the meta device.
    """
    from accelerate import init_empty_weights

    _check_not_meta(model)
    llm, vision = _base_model(model.llm), _base_model(model.visual_encoder)
    text_config = copy.deepcopy(llm.config)
    text_config.use_cache = True
    if getattr(text_config, "quantization_config", None) is not None:
        del text_config.quantization_config  # the merged weights are dense
    vision_config = copy.deepcopy(vision.config)
    config = VideoCCAMConfig(
        text_config=text_config,
        vision_config=vision_config,
        projector_config=copy.deepcopy(model.projector.config),
        visual_select_layer=model.visual_select_layer,
        vision_chunk_size=model.vision_chunk_size,
        image_token_index=IMAGE_TOKEN_INDEX,
        media_tokens=list(MEDIA_TOKENS),
        architectures=[VideoCCAMForCausalLM.__name__],
        torch_dtype=llm.dtype,
    )

    state: dict[str, torch.Tensor] = {}
    state.update((f"llm.{k}", v) for k, v in merged_state_dict(model.llm, merge_inplace, "merging LLM LoRA").items())
    state.update(
        (f"visual_encoder.{k}", v)
        for k, v in merged_state_dict(model.visual_encoder, merge_inplace, "merging vision LoRA").items()
    )
    state.update((f"projector.{k}", v) for k, v in model.projector.state_dict().items())

    with init_empty_weights(include_buffers=False):
        hf_model = VideoCCAMForCausalLM(config)
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
    hf_model.generation_config = make_generation_config(tokenizer, template)
    return hf_model.eval()


# ----------------------------------------------------------------------------------------------------------------
# Writing the single folder
# ----------------------------------------------------------------------------------------------------------------
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
    from huggingface_hub import split_torch_state_dict_into_shards
    from safetensors.torch import save_file
    from transformers.dynamic_module_utils import custom_object_save

    save_dir = Path(save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    for stale in [*save_dir.glob("model*.safetensors"), save_dir / "model.safetensors.index.json"]:
        if stale.is_file():
            stale.unlink()  # a smaller re-export must not leave old shards that from_pretrained would read

    state = _deduplicated_state_dict(hf_model)
    split = split_torch_state_dict_into_shards(
        state, filename_pattern="model{suffix}.safetensors", max_shard_size=max_shard_size
    )
    total = sum(t.numel() * t.element_size() for t in state.values())
    with tqdm(total=total, desc=f"writing weights to {save_dir}", unit="B", unit_scale=True) as bar:
        for filename, names in split.filename_to_tensors.items():
            shard = {name: state[name].contiguous() for name in names}
            save_file(shard, str(save_dir / filename), metadata={"format": "pt"})
            bar.update(sum(t.numel() * t.element_size() for t in shard.values()))
    if split.is_sharded:
        index = {"metadata": split.metadata, "weight_map": split.tensor_to_filename}
        (save_dir / "model.safetensors.index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")

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
        dtype: dtype of the saved weights; None keeps the training dtypes.
        merge_inplace: merge the LoRA adapters inside ``model`` (less memory; for one-shot conversion).

    Returns:
        the files written.

    Raises:
        ValueError: if base weights are on the meta device (``xtuner convert pth_to_hf``): use
            ``tools/convert_to_hf.py``; or for unsupported ``save_pretrained_kwargs``.
    """
    kwargs = dict(save_pretrained_kwargs or {})
    max_shard_size = kwargs.pop("max_shard_size", None) or DEFAULT_MAX_SHARD_SIZE
    kwargs.pop("safe_serialization", None)
    if kwargs:
        raise ValueError(f"save_hf_folder does not support the save_pretrained arguments {sorted(kwargs)}")
    if fp32:
        if dtype not in (None, torch.float32):
            raise ValueError(f"fp32=True contradicts dtype={dtype}")
        dtype = torch.float32
    _check_not_meta(model)

    template = template_from_cfg(cfg)
    tokenizer = prepare_tokenizer(build_tokenizer(cfg), template)
    image_processor = build_image_processor(cfg)
    print_log("building the merged Hugging Face model", "current")
    hf_model = build_hf_model(model, template, tokenizer, merge_inplace=merge_inplace)
    if dtype is not None:
        hf_model.to(dtype)
        for config in (hf_model.config, hf_model.config.text_config, hf_model.config.vision_config):
            config.torch_dtype = dtype
    files = write_hf_folder(hf_model, tokenizer, image_processor, save_dir, max_shard_size=max_shard_size)
    print_log(f"saved the Hugging Face model to {save_dir}", "current")
    return files


# ----------------------------------------------------------------------------------------------------------------
# xtuner layout
# ----------------------------------------------------------------------------------------------------------------
def _cast_trainable(module: nn.Module, dtype: torch.dtype | None) -> dict[str, torch.Tensor] | None:
    """``module.state_dict()`` with its trainable tensors cast to ``dtype`` (None: no state dict override).

    Only the trained tensors are cast: frozen base weights may be on the meta device and are not saved by an
    adapter ``save_pretrained`` anyway.
    """
    if dtype is None:
        return None
    trainable = {name for name, p in module.named_parameters() if p.requires_grad}
    return {k: (v.to(dtype) if k in trainable and v.is_floating_point() else v) for k, v in module.state_dict().items()}


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
    may be on the meta device. As in xtuner, the LLM part is saved in float16 unless ``fp32``; ``model`` itself
    is not modified.

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
        model.visual_encoder.save_pretrained(str(path), **kwargs)
        written.append(path)

    path = save_dir / "projector"
    print_log(f"saving the projector to {path}", "current")
    model.projector.save_pretrained(str(path), **kwargs)
    written.append(path)
    return written
