"""Start-up checks for model settings that only work on a CUDA GPU: 4/8-bit loading (QLoRA, bitsandbytes) and
``attn_implementation="flash_attention_2"`` (flash-attn).

Without them a CPU run gets as far as ``from_pretrained`` and fails deep inside transformers or bitsandbytes
(``CUDA is required but not available for bitsandbytes``, ``Device type not supported for FP4 quantization``),
possibly after downloading the weights. :func:`check_gpu_only_options` reads the builder dict of the LLM or the
vision tower before anything is loaded and raises with what to change. It looks at settings, never at model
names.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from collections.abc import Mapping
from typing import Any

import torch

BITSANDBYTES_REQUIREMENT = "bitsandbytes>=0.45.1,<0.46"
_MIN_BNB = (0, 45, 1)
_MAX_BNB = (0, 46, 0)


def _get(obj: Any, key: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


def requested_quantization_bits(builder: Any) -> int | None:
    """4 or 8 if a ``from_pretrained`` builder dict asks for bitsandbytes quantisation, else None.

    Args:
        builder: ``dict(type=AutoModelForCausalLM.from_pretrained, ...)`` (or an mmengine ConfigDict). Reads
            ``quantization_config`` (a ``BitsAndBytesConfig`` or a builder dict of one) and the legacy
            ``load_in_4bit`` / ``load_in_8bit`` keyword arguments.
    """
    if not isinstance(builder, Mapping):
        return None
    sources = [builder, _get(builder, "quantization_config")]
    if any(_get(s, "load_in_4bit") for s in sources if s is not None):
        return 4
    if any(_get(s, "load_in_8bit") for s in sources if s is not None):
        return 8
    return None


def version_tuple(version: str) -> tuple[int, ...]:
    """``"0.45.1+cu124"`` -> ``(0, 45, 1)``: the first three numeric parts, local suffix dropped."""
    parts = []
    for piece in version.split("+")[0].split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def check_gpu_only_options(builder: Any, where: str) -> None:
    """Raise early, with a fix, if ``builder`` asks for a GPU-only feature this machine cannot provide.

    Args:
        builder: the builder dict of a model part (an ``nn.Module`` is accepted and not checked).
        where: its config key for messages, e.g. ``"model.llm"``.

    Raises:
        RuntimeError: 4/8-bit loading or flash-attention 2 requested but ``torch.cuda.is_available()`` is False.
        ImportError: bitsandbytes (at the tested version) or flash-attn is missing on a CUDA machine.
    """
    if not isinstance(builder, Mapping):
        return
    bits = requested_quantization_bits(builder)
    if bits is not None:
        install = f"pip install '{BITSANDBYTES_REQUIREMENT}' (or: bash tools/install.sh gpu)"
        if not torch.cuda.is_available():
            raise RuntimeError(
                f"QLoRA needs a CUDA GPU and {BITSANDBYTES_REQUIREMENT}: {install}. {where} asks for {bits}-bit "
                "weights (quantization_config), but torch.cuda.is_available() is False on this machine. Train "
                f"on a GPU, or drop the quantisation: --cfg-options {where}.quantization_config=None."
            )
        try:
            import bitsandbytes  # noqa: F401
        except Exception as e:  # ImportError, or bnb 0.45.0's "No module named 'triton.ops'" on triton>=3.2
            raise ImportError(
                f"QLoRA needs a CUDA GPU and {BITSANDBYTES_REQUIREMENT}: {install}. {where} asks for {bits}-bit "
                f"weights but bitsandbytes cannot be imported ({type(e).__name__}: {e})."
            ) from e
        version = version_tuple(importlib.metadata.version("bitsandbytes"))
        if not _MIN_BNB <= version < _MAX_BNB:
            raise ImportError(
                f"QLoRA needs a CUDA GPU and {BITSANDBYTES_REQUIREMENT}: {install}. Found bitsandbytes "
                f"{importlib.metadata.version('bitsandbytes')} (0.45.0 breaks on triton>=3.2; newer releases "
                "break transformers 4.48's bitsandbytes check)."
            )
    if _get(builder, "attn_implementation") == "flash_attention_2":
        if not torch.cuda.is_available():
            raise RuntimeError(
                f"{where}.attn_implementation='flash_attention_2' needs a CUDA GPU and the flash-attn package, "
                f"but torch.cuda.is_available() is False on this machine; use "
                f"--cfg-options {where}.attn_implementation=sdpa."
            )
        if importlib.util.find_spec("flash_attn") is None:
            raise ImportError(
                f"{where}.attn_implementation='flash_attention_2' needs flash-attn: pip install flash-attn "
                f"--no-build-isolation (builds against the installed torch and CUDA), or use "
                f"--cfg-options {where}.attn_implementation=sdpa."
            )
