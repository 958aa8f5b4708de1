"""Write a model fine-tuned from a released Video-CCAM model back into the layout it was released in.

The release is the config's ``released_path`` (:mod:`videoccam.model.released`):

* **v1.0 / v1.1** (xtuner's layout): ``llm_adapter/`` and ``visual_encoder_adapter/`` (the trained adapters,
  PEFT ``save_pretrained``) and ``projector/`` (the projector's own code, config and weights), which upstream's
  v1.0 loader reads with the base LLM and SigLIP it downloads (``PeftModel.from_pretrained``,
  ``AutoModel.from_pretrained("projector", trust_remote_code=True)``).
* **v1.2** (one folder): every file of the release but its weights, copied (config, the model's own code,
  tokenizer, image processor, generation config), and the fine-tuned weights (LoRA merged) under the release's
  own tensor names, so ``AutoModel.from_pretrained(out, trust_remote_code=True)`` loads it as it loads the release.

Either way every tensor keeps the name it has in the release (an exported name the release lacks, or a released
tensor the export would drop, is an error), and by default its dtype there; ``fp32`` writes float32.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from mmengine.logging import print_log

from videoccam.checkpoint import load_checkpoint
from videoccam.export.hf_folder import DEFAULT_MAX_SHARD_SIZE, write_safetensors
from videoccam.export.lora_merge import merged_state_dict
from videoccam.export.xtuner_layout import save_projector
from videoccam.model.released import (
    FOLDER_LAYOUT,
    LLM_ADAPTER,
    PROJECTOR,
    VISION_ADAPTER,
    XTUNER_LAYOUT,
    adapter_state,
    build_released_skeleton,
    find_parts,
    released_layout,
)

if TYPE_CHECKING:  # annotations only (no import cycle with the training model)
    from videoccam.model.videoccam_model import VideoCCAMModel

__all__ = ["released_tensors", "save_released_layout"]

WEIGHT_FILES = ("*.safetensors", "*.bin", "*.safetensors.index.json", "*.bin.index.json")


def released_tensors(folder: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Every tensor of a released weight folder (``*.safetensors`` or ``pytorch_model*.bin``, sharded or not)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    state: dict[str, torch.Tensor] = {}
    files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))
    if not files:
        raise FileNotFoundError(f"{folder} holds no *.safetensors or *.bin weights")
    for file in files:
        if file.suffix == ".safetensors":
            state.update(load_file(str(file)))
        else:
            state.update(load_checkpoint(file))
    return state


def _cast_like(state: Mapping[str, torch.Tensor], reference: Mapping[str, torch.Tensor], fp32: bool, what: str
               ) -> dict[str, torch.Tensor]:  # fmt: skip
    """``state`` with exactly ``reference``'s names, each cast to its dtype there (float32 with ``fp32``)."""
    missing, extra = sorted(set(reference) - set(state)), sorted(set(state) - set(reference))
    if missing or extra:
        raise ValueError(
            f"the fine-tuned {what} does not have the released tensor names: missing {missing[:5]} ({len(missing)} "
            f"in all), not in the release {extra[:5]} ({len(extra)} in all)"
        )
    out = {}
    for name, value in state.items():
        dtype = torch.float32 if fp32 and value.is_floating_point() else reference[name].dtype
        out[name] = value.detach().to("cpu", dtype).contiguous()
    return out


def _save_xtuner_layout(model: VideoCCAMModel, released: Path, save_dir: Path, fp32: bool) -> list[Path]:
    from peft import PeftModel

    written = []
    for folder_name, part in ((LLM_ADAPTER, model.llm), (VISION_ADAPTER, model.visual_encoder)):
        if not (released / folder_name).is_dir():
            continue
        if not isinstance(part, PeftModel):
            raise ValueError(f"the release has {folder_name}/ but the model's tower carries no PEFT adapter")
        reference = released_tensors(released / folder_name)
        state = _cast_like(adapter_state(part), reference, fp32, folder_name)
        path = save_dir / folder_name
        print_log(f"saving {folder_name} to {path}", "current")
        part.save_pretrained(str(path), state_dict=_module_state_cast(part, state))
        written.append(path)
    reference = released_tensors(released / PROJECTOR)
    state = _cast_like(model.projector.state_dict(), reference, fp32, "projector")
    path = save_dir / PROJECTOR
    print_log(f"saving the projector to {path}", "current")
    safe = any((released / PROJECTOR).glob("*.safetensors"))
    save_projector(model.projector, path, state, safe_serialization=safe)
    written.append(path)
    return written


def _module_state_cast(part: torch.nn.Module, adapter: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``part.state_dict()`` with its adapter tensors replaced by ``adapter``'s (keyed as PEFT saves them)."""
    from peft.utils import get_peft_model_state_dict

    full = dict(part.state_dict())
    # map each saved-format key back to the module key PEFT read it from (same order, same tensors)
    saved = get_peft_model_state_dict(part, state_dict=full)
    by_storage = {(t.data_ptr(), tuple(t.shape)): key for key, t in full.items()}
    for saved_key, tensor in saved.items():
        module_key = by_storage.get((tensor.data_ptr(), tuple(tensor.shape)))
        if module_key is None:
            raise ValueError(f"cannot find the module tensor of the adapter tensor {saved_key}")
        full[module_key] = adapter[saved_key]
    return full


def _save_folder(model: VideoCCAMModel, released: Path, save_dir: Path, fp32: bool, max_shard_size: int | str
                 ) -> list[Path]:  # fmt: skip
    skeleton = build_released_skeleton(released)
    parts = find_parts(skeleton, str(released))
    reference = released_tensors(released)
    state: dict[str, torch.Tensor] = {}
    for role, module in (("llm", model.llm), ("visual_encoder", model.visual_encoder), ("projector", model.projector)):
        prefix = parts[role][0]
        merged = merged_state_dict(module, inplace=False, desc=f"merging {role} LoRA")
        state.update((f"{prefix}.{k}", v) for k, v in merged.items())
    # tensors a part saves twice (tied word embeddings) appear once in the release: keep the released name
    for name in sorted(set(state) - set(reference)):
        if any(state[name] is state[other] or state[name].data_ptr() == state[other].data_ptr()
               for other in reference if other in state):  # fmt: skip
            del state[name]
    # tensors of the release outside the three parts (none in the known releases) are kept as released
    for name in set(reference) - set(state):
        if not any(name.startswith(parts[role][0] + ".") for role in parts):
            state[name] = reference[name]
    state = _cast_like(state, reference, fp32, "model")
    save_dir.mkdir(parents=True, exist_ok=True)
    for source in sorted(released.iterdir()):
        if source.is_file() and not any(source.match(pattern) for pattern in WEIGHT_FILES):
            shutil.copy(source, save_dir / source.name)
    if fp32:
        config = json.loads((save_dir / "config.json").read_text())
        config["torch_dtype"] = "float32"
        (save_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    files = write_safetensors(state, save_dir, max_shard_size)
    print_log(f"saved the fine-tuned model in the released layout of {released} to {save_dir}", "current")
    return files


def _released_path(cfg: Any) -> Path:
    """The release a config fine-tunes: its ``released_path``, as the model builders got it."""
    found = {str(cfg.get("released_path"))} if cfg.get("released_path") else set()
    for part in ("llm", "visual_encoder", "projector"):
        node = cfg.get("model", {}).get(part)
        if isinstance(node, Mapping) and node.get("released_path"):
            found.add(str(node["released_path"]))
    if not found:
        raise ValueError(
            "the config has no released_path: the released layout is for models fine-tuned from a released "
            "Video-CCAM model (configs/tiny/videoccam_tiny_qwen2_finetune_released.py, configs/released/)"
        )
    if len(found) > 1:
        raise ValueError(f"the config names several releases ({sorted(found)}): released_path and "
                         "model.llm / visual_encoder / projector.released_path must agree")  # fmt: skip
    return Path(found.pop())


def save_released_layout(
    model: VideoCCAMModel,
    cfg: Any,
    save_dir: str | os.PathLike,
    fp32: bool = False,
    max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE,
) -> list[Path]:
    """Write ``model`` (built by a config with ``released_path``) in the layout of that release.

    Args:
        model: the fine-tuned training model (real weights).
        cfg: its config; ``released_path`` (and the ``released_path`` of the model's builders, which must agree)
            names the release it started from.
        save_dir: output folder.
        fp32: float32 weights instead of the release's dtypes.
        max_shard_size: largest weight file of a v1.2 folder.

    Returns:
        the folders (v1.0 / v1.1) or weight files (v1.2) written.

    Raises:
        ValueError: if the config has no ``released_path`` or the model's tensors do not carry the release's names.
    """
    released, save_dir = _released_path(cfg), Path(save_dir)
    if released.resolve() == save_dir.resolve():
        raise ValueError(f"save_dir {save_dir} is the released folder itself; write the export elsewhere")
    if released_layout(released) == XTUNER_LAYOUT:
        return _save_xtuner_layout(model, released, save_dir, fp32)
    assert released_layout(released) == FOLDER_LAYOUT
    return _save_folder(model, released, save_dir, fp32, max_shard_size)
