"""Merging PEFT adapters (LoRA) into their base layers, on copies or in place, through PEFT's own ``merge``."""

from __future__ import annotations

import copy
from collections import OrderedDict

import torch
from torch import nn
from tqdm import tqdm

__all__ = ["base_model", "merged_state_dict"]


def base_model(module: nn.Module) -> nn.Module:
    """The model inside a PEFT wrapper (``module`` itself when it is not wrapped)."""
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
    root = base_model(module)
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
