"""Load a trained Video-CCAM model: the one place that turns a config + checkpoint, or a converted folder, into a model.

* :func:`load_trained_model` builds the training model (:class:`~videoccam.model.videoccam_model.VideoCCAMModel`)
  from a config with its real base weights and loads a checkpoint's trained tensors into it. A QLoRA config's
  4-bit ``quantization_config`` is dropped, so the adapters can be merged into dense weights (the usual way to
  export a QLoRA model). ``tools/convert_to_hf.py`` writes what it returns.
* :func:`load_model` gives ``(model, tokenizer, image_processor)`` for chat, the web demo and evaluation, from a
  converted folder (``AutoModel.from_pretrained(..., trust_remote_code=True)``) or from a config + checkpoint,
  converted in memory (:func:`build_hf_from_checkpoint`).
* :func:`check_model_source` is the rule for naming a model that every loader and tool applies: a converted
  folder, or a config together with a checkpoint.
* :func:`load_image_processor` loads a folder's image processor in the implementation training matches (PIL).

Heavy imports (xtuner, mmengine) happen only on the config + checkpoint path, so loading a converted folder starts
quickly.
"""

from __future__ import annotations

import os
from typing import Any

import torch

__all__ = ["build_hf_from_checkpoint", "check_model_source", "load_image_processor", "load_model", "load_trained_model"]


def check_model_source(
    model_path: str | os.PathLike | None, config: str | os.PathLike | None, checkpoint: str | os.PathLike | None
) -> None:
    """Check that a model is named either by a converted folder or by a config with its checkpoint, and exists.

    Args:
        model_path: a converted folder (``--model``).
        config: a training config (``--config``).
        checkpoint: its checkpoint: ``.pth`` file, DeepSpeed folder or work dir (``--checkpoint``).

    Raises:
        ValueError: if both ways, neither, or only one of config / checkpoint are given.
        FileNotFoundError: if a given path does not exist, or the checkpoint is a folder that holds no checkpoint
            (:class:`~videoccam.checkpoint.NoCheckpointError`: a failed run's work dir, its log named).
    """
    if model_path and (config or checkpoint):
        raise ValueError(
            "give either model_path (a converted folder, --model) or a config and a checkpoint "
            "(--config/--checkpoint), not both"
        )
    if not model_path and not (config and checkpoint):
        raise ValueError(
            "no model: give either model_path (a converted folder, --model) or both a config and a checkpoint "
            f"(--config/--checkpoint); got config={config!r}, checkpoint={checkpoint!r}"
        )
    for what, path in (("model folder (--model)", model_path), ("config (--config)", config),
                       ("checkpoint (--checkpoint)", checkpoint)):  # fmt: skip
        if path and not os.path.exists(path):
            raise FileNotFoundError(f"{what} {str(path)!r} does not exist")
    if checkpoint:
        from videoccam.checkpoint import resolve_checkpoint

        resolve_checkpoint(checkpoint)  # a work dir that holds no checkpoint fails here, saying what it holds


def load_image_processor(path: str | os.PathLike) -> Any:
    """The image processor saved in ``path`` in its PIL ("slow") implementation, chosen explicitly.

    Training resizes frames with PIL bicubic, as the slow ``SiglipImageProcessor`` does
    (videoccam/dataset/frame_processing.py), so inference must too. transformers takes that choice from the call,
    not from ``preprocessor_config.json``: 4.x from ``use_fast`` (unset, it picks the slow one and prints "Using a
    slow image processor as `use_fast` is unset ..."), 5.x from ``backend`` (unset, torchvision where installed,
    which resizes differently; ``use_fast`` is deprecated there).
    """
    import transformers
    from transformers import AutoImageProcessor

    if int(transformers.__version__.split(".")[0]) >= 5:
        return AutoImageProcessor.from_pretrained(str(path), backend="pil")
    return AutoImageProcessor.from_pretrained(str(path), use_fast=False)


def load_trained_model(
    config: str | os.PathLike, checkpoint: str | os.PathLike, cfg_options: dict[str, Any] | None = None
) -> tuple[Any, Any]:
    """Build the training model of ``config`` with its base weights and load the trained tensors of ``checkpoint``.

    Args:
        config: an mmengine/xtuner config file of this project.
        checkpoint: an mmengine ``.pth``, a DeepSpeed checkpoint folder, or a work dir with ``last_checkpoint``;
            it holds every trained tensor, so the config's ``model.pretrained_pth`` is not loaded.
        cfg_options: overrides merged into the config (``{"model.llm.pretrained_model_name_or_path": ...}``).

    Returns:
        ``(model, cfg)``: the :class:`~videoccam.model.videoccam_model.VideoCCAMModel` in eval mode and the config
        as used (overrides applied, ``model.pretrained_pth`` None, no ``quantization_config``).

    Raises:
        FileNotFoundError: if ``config`` or ``checkpoint`` does not exist, or ``checkpoint`` is a work dir that holds
            no checkpoint (:class:`~videoccam.checkpoint.NoCheckpointError`, naming the failed run's log).
        ValueError: if the checkpoint holds weights that have no place in the model.
    """
    from mmengine.logging import print_log
    from xtuner.registry import BUILDER

    from videoccam.config import load_config

    from videoccam.checkpoint import resolve_checkpoint

    checkpoint = resolve_checkpoint(checkpoint)  # before the slow model build: a work dir without one fails here
    cfg = load_config(config, cfg_options)
    cfg.model.pretrained_pth = None  # the checkpoint holds every trained weight
    if cfg.model.get("llm", {}).get("quantization_config") is not None:
        # QLoRA: merge the adapters into dense base weights (the usual way to export a QLoRA model)
        print_log("loading the LLM without its quantization_config to merge the adapters into dense weights",
                  "current")  # fmt: skip
        cfg.model.llm.pop("quantization_config")
    print_log(f"building the model from {config}", "current")
    model = BUILDER.build(cfg.model)
    model.load_pretrained(str(checkpoint))
    return model.eval(), cfg


def _finish(model: Any, device: str | torch.device, dtype: torch.dtype | None) -> Any:
    if dtype is not None:
        model = model.to(dtype)
    return model.to(device).eval()


def build_hf_from_checkpoint(
    config: str | os.PathLike,
    checkpoint: str | os.PathLike,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    cfg_options: dict[str, Any] | None = None,
) -> tuple[Any, Any, Any]:
    """:func:`load_trained_model`, then turn it into the Hugging Face model in memory (nothing is written).

    The LoRA adapters are merged in place (:func:`videoccam.export.hf_model.build_hf_model`).

    Args:
        config, checkpoint, cfg_options: as for :func:`load_trained_model`.
        device: where to put the model.
        dtype: cast the model (None keeps the config's dtypes).

    Returns:
        ``(model, tokenizer, image_processor)``.

    Raises:
        FileNotFoundError: if ``config`` or ``checkpoint`` does not exist.
    """
    from videoccam.config import build_image_processor, build_tokenizer, template_from_cfg
    from videoccam.export.hf_model import build_hf_model
    from videoccam.export.tokenizer import prepare_tokenizer

    training_model, cfg = load_trained_model(config, checkpoint, cfg_options)
    template = template_from_cfg(cfg)
    tokenizer = prepare_tokenizer(build_tokenizer(cfg), template)
    image_processor = build_image_processor(cfg)
    # dtype given: cast from the fp32 training weights (VideoCCAMModel keeps them fp32), not from their bf16 rounding
    model = build_hf_model(training_model, template, tokenizer, merge_inplace=True, dtype=dtype)
    del training_model
    return _finish(model, device, dtype), tokenizer, image_processor


def load_model(
    model_path: str | os.PathLike | None = None,
    config: str | os.PathLike | None = None,
    checkpoint: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    cfg_options: dict[str, Any] | None = None,
) -> tuple[Any, Any, Any]:
    """Load a Video-CCAM model for chat / evaluation.

    Give either ``model_path`` (a converted single folder, loaded with ``AutoModel`` /
    ``AutoTokenizer`` / ``AutoImageProcessor.from_pretrained(..., trust_remote_code=True)``) or ``config`` and
    ``checkpoint``, converted in memory by :func:`build_hf_from_checkpoint`.

    Args:
        model_path: converted folder.
        config: training config file.
        checkpoint: training checkpoint (``.pth``, DeepSpeed folder or work dir) for ``config``.
        device: where to put the model ("cpu", "cuda", "cuda:1").
        dtype: model dtype (None: the dtype the folder was saved in, or the config's dtypes).
        cfg_options: config overrides (``config`` path only).

    Returns:
        ``(model, tokenizer, image_processor)``; ``model.chat(messages, images, tokenizer, image_processor, ...)``.

    Raises:
        ValueError: if the model is not named as :func:`check_model_source` requires.
        FileNotFoundError: if a path does not exist, or ``model_path`` is not a converted folder.
    """
    check_model_source(model_path, config, checkpoint)
    if model_path is None:
        return build_hf_from_checkpoint(config, checkpoint, device=device, dtype=dtype, cfg_options=cfg_options)
    if cfg_options:
        raise ValueError("cfg_options go with config, not with a converted model_path")
    if not os.path.isfile(os.path.join(model_path, "config.json")):
        raise FileNotFoundError(
            f"{model_path} is not a converted Video-CCAM folder (no config.json); convert a training checkpoint "
            "with `python tools/convert_to_hf.py CONFIG CHECKPOINT OUT_DIR`, or pass config= and checkpoint="
        )
    from transformers import AutoModel, AutoTokenizer

    # dtype "auto": the dtype the folder was saved in (bf16 for released models), not transformers' float32
    model = AutoModel.from_pretrained(
        str(model_path), trust_remote_code=True, torch_dtype=dtype or "auto", low_cpu_mem_usage=True
    )
    # trust_remote_code: transformers 5 reads the folder's config (with its auto_map) for the tokenizer too
    tokenizer = AutoTokenizer.from_pretrained(str(model_path), trust_remote_code=True)
    image_processor = load_image_processor(model_path)
    return _finish(model, device, None), tokenizer, image_processor
