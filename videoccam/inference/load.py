"""Load a Video-CCAM model for inference: a converted folder, or a training config + checkpoint in memory.

Both give the same triple ``(model, tokenizer, image_processor)``: a ``VideoCCAMForCausalLM`` (``.chat``,
``.generate``, ``.encode_media``), a tokenizer whose chat template reproduces training's prompts, and the
vision tower's image processor. Heavy imports (xtuner, mmengine) happen only on the config + checkpoint path,
so loading a converted folder starts quickly.
"""

from __future__ import annotations

import os
from typing import Any

import torch

__all__ = ["build_hf_from_checkpoint", "load_model"]


def _finish(model: Any, device: str | torch.device, dtype: torch.dtype | None) -> Any:
    if dtype is not None:
        model = model.to(dtype)
    return model.to(device).eval()


def build_hf_from_checkpoint(
    config: str | os.PathLike,
    checkpoint: str | os.PathLike | None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    cfg_options: dict[str, Any] | None = None,
) -> tuple[Any, Any, Any]:
    """Build the training model from ``config``, load ``checkpoint`` and turn it into the Hugging Face model.

    Nothing is written to disk: the LoRA adapters are merged in memory (:func:`videoccam.model.export.build_hf_model`).

    Args:
        config: an mmengine/xtuner config file of this project.
        checkpoint: an mmengine ``.pth``, a DeepSpeed checkpoint folder, or a work dir with ``last_checkpoint``.
            None builds the config as it is (its ``model.pretrained_pth``, if any, is then loaded).
        device: where to put the model.
        dtype: cast the model (None keeps the config's dtypes).
        cfg_options: overrides merged into the config (``{"model.llm.pretrained_model_name_or_path": ...}``).

    Returns:
        ``(model, tokenizer, image_processor)``.

    Raises:
        FileNotFoundError: if ``config`` or ``checkpoint`` does not exist.
    """
    from videoccam import xtuner_compat

    xtuner_compat.install()
    from mmengine.config import Config
    from xtuner.registry import BUILDER

    from videoccam.model.export import (
        build_hf_model,
        build_image_processor,
        build_tokenizer,
        prepare_tokenizer,
        template_from_cfg,
    )

    if not os.path.isfile(config):
        raise FileNotFoundError(f"config not found: {config}")
    if checkpoint is not None and not os.path.exists(checkpoint):
        raise FileNotFoundError(f"checkpoint not found: {checkpoint}")
    cfg = Config.fromfile(str(config))
    if cfg_options:
        cfg.merge_from_dict(dict(cfg_options))
    if checkpoint is not None:
        cfg.model.pretrained_pth = None
    training_model = BUILDER.build(cfg.model)
    if checkpoint is not None:
        training_model.load_pretrained(str(checkpoint))
    training_model.eval()
    template = template_from_cfg(cfg)
    tokenizer = prepare_tokenizer(build_tokenizer(cfg), template)
    image_processor = build_image_processor(cfg)
    model = build_hf_model(training_model, template, tokenizer, merge_inplace=True)
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
    ``AutoTokenizer`` / ``AutoImageProcessor.from_pretrained(..., trust_remote_code=True)``) or ``config`` (+
    ``checkpoint``), which is converted in memory by :func:`build_hf_from_checkpoint`.

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
        ValueError: if both or neither of ``model_path`` and ``config`` are given.
        FileNotFoundError: if a path does not exist.
    """
    if (model_path is None) == (config is None):
        raise ValueError("give either model_path (a converted folder) or config (+ checkpoint), not both or neither")
    if model_path is None:
        return build_hf_from_checkpoint(config, checkpoint, device=device, dtype=dtype, cfg_options=cfg_options)
    if checkpoint is not None or cfg_options:
        raise ValueError("checkpoint and cfg_options go with config, not with a converted model_path")
    if not os.path.isfile(os.path.join(model_path, "config.json")):
        raise FileNotFoundError(
            f"{model_path} is not a converted Video-CCAM folder (no config.json); convert a training checkpoint "
            "with `python tools/convert_to_hf.py CONFIG CHECKPOINT OUT_DIR`, or pass config= and checkpoint="
        )
    from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

    # dtype "auto": the dtype the folder was saved in (bf16 for released models), not transformers' float32
    model = AutoModel.from_pretrained(
        str(model_path), trust_remote_code=True, torch_dtype=dtype or "auto", low_cpu_mem_usage=True
    )
    tokenizer = AutoTokenizer.from_pretrained(str(model_path))
    image_processor = AutoImageProcessor.from_pretrained(str(model_path))
    return _finish(model, device, None), tokenizer, image_processor
