"""Tiny replicas of the released Video-CCAM checkpoint layouts (design.md section 8), for tests and the docs.

Output of :func:`make_released_replicas` (``tools/make_released_replicas.py --out DIR``)::

    DIR/base/qwen2/, DIR/base/siglip/   the base models of the v1.0 replica (tiny random Qwen2 + SigLIP, as
                                        videoccam.synthetic.tiny_models writes them), standing in for e.g.
                                        microsoft/Phi-3-mini-4k-instruct and google/siglip-so400m-patch14-384
    DIR/v1_0/                           the v1.0 / v1.1 layout (what `xtuner convert pth_to_hf` wrote):
        llm_adapter/                    PEFT LoRA of the base LLM (every linear layer but lm_head), random weights
        visual_encoder_adapter/         PEFT LoRA of SigLIP, target_modules q_proj k_proj v_proj out_proj fc1 fc2
                                        (as the released 9B adapter_config.json), random weights
        projector/                      config.json (auto_map), configuration_ccam_projector.py,
                                        modeling_ccam_projector.py, model.safetensors
    DIR/v1_2/                           the v1.2 single folder: config.json (model_type "videoccam",
                                        architectures ["VideoCCAM"], auto_map to its own configuration_videoccam /
                                        modeling_videoccam, image_token_id / video_token_id of real added tokens),
                                        the model code and its projector files, model.safetensors, the tokenizer
                                        with a chat template, preprocessor_config.json, generation_config.json

The remote code is :mod:`videoccam.synthetic.replica_code`, not the project's model: other class names
(``CCAMModel``, ``VideoCCAM``), other parameter names (``query``, ``wkv``, ``ffn_in``, ``mm_projector.*``,
``language_model.*``), other config field names (``num_query``, ``vision_feature_layer``), the same
``model_type`` strings. The projector has 16 queries (the project's tiny configs use 32). Weights are seeded and
random (LoRA B matrices included, so the adapters change the output); the whole run takes a few seconds.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from videoccam.model.hf.constants import IMAGE_TOKEN, VIDEO_TOKEN
from videoccam.synthetic import tiny_models

__all__ = ["PROJECTOR_CONFIG", "REPLICA_CODE", "make_released_replicas", "write_v10_replica", "write_v12_replica"]

REPLICA_CODE = Path(__file__).resolve().parent / "replica_code"
PROJECTOR_FILES = ("configuration_ccam_projector.py", "modeling_ccam_projector.py")
V12_FILES = (*PROJECTOR_FILES, "configuration_videoccam.py", "modeling_videoccam.py")
# The replica projector: widths follow the tiny SigLIP (32) and the tiny LLM (64).
PROJECTOR_CONFIG = dict(
    num_query=16,
    hidden_size=32,
    num_heads=4,
    num_key_value_heads=2,
    cross_hidden_size=tiny_models.SIGLIP_CONFIG["hidden_size"],
    intermediate_size=64,
    output_size=tiny_models.LLM_CONFIG["hidden_size"],
)
LLM_LORA = dict(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                    "down_proj"])  # fmt: skip
VISION_LORA = dict(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"])


def _load_code(folder: Path, module: str):
    """Import a remote-code module from ``folder`` the way ``trust_remote_code`` does."""
    from transformers.dynamic_module_utils import get_class_from_dynamic_module

    return get_class_from_dynamic_module(module, str(folder))


def _randomize(module: torch.nn.Module, generator: torch.Generator, scale: float) -> None:
    with torch.no_grad():
        for param in module.parameters():
            if param.requires_grad:
                param.copy_(torch.randn(param.shape, generator=generator) * scale)


def _write_adapter(base_path: Path, out: Path, lora: dict, model_class, seed: int) -> None:
    from peft import LoraConfig, get_peft_model

    model = model_class.from_pretrained(str(base_path))
    peft_model = get_peft_model(model, LoraConfig(lora_dropout=0.05, bias="none", **lora))
    _randomize(peft_model, torch.Generator().manual_seed(seed), 0.05)  # LoRA A and B (PEFT starts B at zero)
    peft_model.save_pretrained(str(out))


def _write_projector(out: Path, seed: int) -> None:
    """``out/`` = projector code + config.json (with auto_map) + model.safetensors, as save_pretrained writes."""
    out.mkdir(parents=True, exist_ok=True)
    for name in PROJECTOR_FILES:
        shutil.copy(REPLICA_CODE / name, out / name)
    config = {
        **PROJECTOR_CONFIG,
        "model_type": "ccam_projector",
        "architectures": ["CCAMModel"],
        "auto_map": {"AutoConfig": "configuration_ccam_projector.CCAMConfig",
                     "AutoModel": "modeling_ccam_projector.CCAMModel"},
        "torch_dtype": "float32",
    }  # fmt: skip
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    model_class = _load_code(out, "modeling_ccam_projector.CCAMModel")
    torch.manual_seed(seed)
    projector = model_class(model_class.config_class(**PROJECTOR_CONFIG))
    _randomize(projector, torch.Generator().manual_seed(seed), 0.1)
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in projector.state_dict().items()}, str(out / "model.safetensors"),
              metadata={"format": "pt"})  # fmt: skip


def write_v10_replica(out: Path, base: Path, seed: int = 0) -> Path:
    """The v1.0 / v1.1 layout in ``out``, with adapters for the base models in ``base/qwen2``, ``base/siglip``."""
    from transformers import AutoModelForCausalLM, SiglipVisionModel

    out.mkdir(parents=True, exist_ok=True)
    _write_adapter(base / "qwen2", out / "llm_adapter", LLM_LORA, AutoModelForCausalLM, seed + 1)
    _write_adapter(base / "siglip", out / "visual_encoder_adapter", VISION_LORA, SiglipVisionModel, seed + 2)
    _write_projector(out / "projector", seed + 3)
    return out


def write_v12_replica(out: Path, base: Path, seed: int = 0) -> Path:
    """The v1.2 single folder in ``out``: the base models' weights (standing in for merged ones) + a projector."""
    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    from videoccam.inference.load import load_image_processor

    out.mkdir(parents=True, exist_ok=True)
    for name in V12_FILES:
        shutil.copy(REPLICA_CODE / name, out / name)
    tokenizer = AutoTokenizer.from_pretrained(str(base / "qwen2"))
    image_token_id, video_token_id = tokenizer.convert_tokens_to_ids([IMAGE_TOKEN, VIDEO_TOKEN])
    text_config = AutoConfig.from_pretrained(str(base / "qwen2")).to_dict()
    vision_config = AutoConfig.from_pretrained(str(base / "siglip")).to_dict()
    for sub in (text_config, vision_config):
        sub.pop("_name_or_path", None)
    config = {
        "model_type": "videoccam",
        "architectures": ["VideoCCAM"],
        "auto_map": {"AutoConfig": "configuration_videoccam.VideoCCAMConfig",
                     "AutoModel": "modeling_videoccam.VideoCCAM"},
        "image_token_id": image_token_id,
        "video_token_id": video_token_id,
        "vision_feature_layer": -2,
        "projector_config": {**PROJECTOR_CONFIG, "model_type": "ccam_projector"},
        "text_config": text_config,
        "vision_config": vision_config,
        "torch_dtype": "float32",
    }  # fmt: skip
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    model_class = _load_code(out, "modeling_videoccam.VideoCCAM")
    torch.manual_seed(seed)
    model = model_class(model_class.config_class.from_pretrained(str(out)))
    from transformers import AutoModelForCausalLM, SiglipVisionModel

    model.language_model.load_state_dict(AutoModelForCausalLM.from_pretrained(str(base / "qwen2")).state_dict())
    model.vision_encoder.load_state_dict(SiglipVisionModel.from_pretrained(str(base / "siglip")).state_dict())
    _randomize(model.mm_projector, torch.Generator().manual_seed(seed + 3), 0.1)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "model.safetensors"),
              metadata={"format": "pt"})  # fmt: skip
    tokenizer.save_pretrained(str(out))
    load_image_processor(base / "siglip").save_pretrained(str(out))
    GenerationConfig.from_pretrained(str(base / "qwen2")).save_pretrained(str(out))
    return out


def make_released_replicas(
    out_dir: str | Path, force: bool = False, seed: int = 0, base_models: str | Path | None = None
) -> dict[str, Path]:
    """Write ``base/`` (tiny models), ``v1_0/`` and ``v1_2/`` into ``out_dir``; existing ones are kept unless ``force``.

    Args:
        out_dir: output folder. Its sub-folders have no dot in their names: transformers 4.48 imports remote code
            from a module named after the folder, and a dot there breaks the code's relative imports.
        force: rewrite what exists.
        seed: seed of every random weight.
        base_models: an existing :func:`~videoccam.synthetic.tiny_models.make_tiny_models` folder to build on
            (its ``qwen2`` and ``siglip``) instead of writing ``out_dir/base``.

    Returns:
        ``{"base": ..., "v1_0": ..., "v1_2": ...}``.
    """
    out_dir = Path(out_dir)
    if force:
        shutil.rmtree(out_dir, ignore_errors=True)
    if base_models is None:
        base = out_dir / "base"
        # random (not pretrained) tiny LLM: the replicas test plumbing, not language
        tiny_models.make_tiny_models(base, seed=seed, pretrain_steps=0, vision_pretrain_steps=0)
    else:
        base = Path(base_models)
    folders = {"base": base}
    for name, writer in (("v1_0", write_v10_replica), ("v1_2", write_v12_replica)):
        folder = out_dir / name
        folders[name] = folder
        marker = folder / ("projector/config.json" if name == "v1_0" else "config.json")
        if marker.exists():
            print(f"{folder}: exists, kept (use --force to rewrite)")
            continue
        shutil.rmtree(folder, ignore_errors=True)
        writer(folder, base, seed)
        print(f"{folder}: wrote {', '.join(sorted(p.name for p in folder.iterdir()))}")
    return folders
