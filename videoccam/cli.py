"""Command-line helpers of the tools: naming a model, devices and dtypes, ``--cfg-options``, chat and sampling flags.

Every tool in ``tools/`` parses these the same way through this module, so ``--model`` / ``--config`` /
``--checkpoint`` follow one rule (:func:`videoccam.inference.load.check_model_source`), dtype names mean the same
everywhere, and ``--cfg-options`` is parsed like ``xtuner train``'s. Heavy imports (torch, mmengine) happen inside
the functions that need them, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from videoccam.inference.chat import GenerationSettings, Media, load_media

__all__ = [
    "DTYPE_NAMES",
    "add_model_args",
    "add_sampling_args",
    "check_model_args",
    "generation_settings",
    "load_model_from_args",
    "media_from_args",
    "parse_cfg_options",
    "parse_frame_counts",
    "resolve_device",
    "resolve_dtype",
]

# dtype names the tools accept -> the torch attribute
DTYPE_NAMES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
               "float16": "float16", "fp16": "float16"}  # fmt: skip


# --------------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------------
def resolve_device(device: str | None) -> str:
    """``auto`` (or nothing) -> ``cuda`` when available, else ``cpu``; anything else unchanged."""
    if device in (None, "", "auto"):
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_dtype(dtype: str | None) -> Any:
    """A dtype name (:data:`DTYPE_NAMES`) -> ``torch.dtype``; None, "" and "auto" give None (the caller picks).

    Raises:
        ValueError: On an unknown name.
    """
    if dtype in (None, "", "auto"):
        return None
    if dtype not in DTYPE_NAMES:
        raise ValueError(f"unknown dtype {dtype!r}; expected auto or one of {sorted(DTYPE_NAMES)}")
    import torch

    return getattr(torch, DTYPE_NAMES[dtype])


def parse_cfg_options(options: Sequence[str] | None) -> dict[str, Any] | None:
    """``["a.b=1", "c=[1,2]"]`` -> ``{"a.b": 1, "c": [1, 2]}``, parsed like ``xtuner train``'s ``--cfg-options``.

    Raises:
        ValueError: On an item without ``=``.
    """
    if not options:
        return None
    bad = [item for item in options if "=" not in item]
    if bad:
        raise ValueError(f"--cfg-options expects KEY=VALUE, got {bad[0]!r}")
    from mmengine.config import DictAction

    namespace = argparse.Namespace()
    DictAction(option_strings=["--cfg-options"], dest="cfg_options")(None, namespace, list(options))
    return namespace.cfg_options


def parse_frame_counts(text: str) -> list[int]:
    """Parse ``"16,32,64"`` into ``[16, 32, 64]`` (duplicates dropped, order kept).

    Raises:
        argparse.ArgumentTypeError: On anything but a comma-separated list of positive integers.
    """
    try:
        counts = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        counts = []
    if not counts or any(c < 1 for c in counts):
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers like 16,32, got {text!r}")
    return list(dict.fromkeys(counts))


# --------------------------------------------------------------------------------------------------
# The model: --model, or --config with --checkpoint
# --------------------------------------------------------------------------------------------------
def add_model_args(parser: argparse.ArgumentParser, device: str = "cpu", dtype: str | None = None) -> None:
    """Model-loading flags: ``--model`` or ``--config`` + ``--checkpoint``, ``--cfg-options``, ``--device``,
    ``--dtype``.

    Args:
        parser: The tool's parser.
        device: Default of ``--device`` ("cpu", or "auto": CUDA when available).
        dtype: Default of ``--dtype`` (None: the loader's choice; "auto": the tool's device-dependent choice).
    """
    group = parser.add_argument_group("model (give --model, or --config and --checkpoint)")
    group.add_argument("--model", help="converted Hugging Face model folder (tools/convert_to_hf.py)")
    group.add_argument("--config", help="training config (with --checkpoint)")
    group.add_argument("--checkpoint",
                       help="training checkpoint: .pth file, DeepSpeed folder or work dir (with --config)")
    group.add_argument("--cfg-options", nargs="+", default=None, metavar="KEY=VALUE",
                       help="override settings of --config, as in tools/train.py")
    group.add_argument("--device", default=device,
                       help=f"cpu, cuda, cuda:N or auto (cuda when available); default {device}")
    group.add_argument("--dtype", default=dtype,
                       help=f"auto, {', '.join(DTYPE_NAMES)} (default: {dtype or 'the loader picks, fp32 on CPU'})")


def check_model_args(args: argparse.Namespace) -> None:
    """Validate the model flags before anything slow happens.

    Raises:
        ValueError: If neither or both ways of naming a model are given.
        FileNotFoundError: If a given path does not exist.
    """
    from videoccam.inference.load import check_model_source

    check_model_source(args.model, args.config, args.checkpoint)


def load_model_from_args(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """Load ``(model, tokenizer, image_processor)`` with :func:`videoccam.inference.load.load_model`, in eval mode."""
    from videoccam.inference.load import load_model

    model, tokenizer, image_processor = load_model(
        model_path=args.model,
        config=args.config,
        checkpoint=args.checkpoint,
        device=resolve_device(args.device),
        dtype=resolve_dtype(args.dtype),
        cfg_options=parse_cfg_options(args.cfg_options),
    )
    return model.eval(), tokenizer, image_processor


# --------------------------------------------------------------------------------------------------
# Chat: frame sampling and decoding
# --------------------------------------------------------------------------------------------------
def add_sampling_args(parser: argparse.ArgumentParser) -> None:
    """Frame-sampling and decoding flags of the chat tool."""
    media = parser.add_argument_group("frame sampling")
    media.add_argument("--num-frames", type=int, default=16, help="frames sampled per video (uniform; default 16)")
    media.add_argument("--sampling", choices=["uniform", "fps"], default="uniform",
                       help="uniform: midpoints of equal segments; fps: --fps frames per second, at most --max-frames")
    media.add_argument("--fps", type=float, default=None, help="target rate for --sampling fps (default 1.0)")
    media.add_argument("--max-frames", type=int, default=None,
                       help="most frames for --sampling fps (default: --num-frames)")
    gen = parser.add_argument_group("generation")
    gen.add_argument("--max-new-tokens", type=int, default=512, help="reply budget in tokens (default 512)")
    gen.add_argument("--do-sample", action="store_true", help="sample instead of greedy decoding")
    gen.add_argument("--temperature", type=float, default=None,
                     help="sampling temperature; a value > 0 turns sampling on, 0 means greedy (default: greedy)")
    gen.add_argument("--top-p", type=float, default=None, help="nucleus sampling threshold (with sampling)")
    gen.add_argument("--seed", type=int, default=None, help="random seed for sampling")


def generation_settings(args: argparse.Namespace) -> GenerationSettings:
    """Decoding options from the parsed flags.

    Raises:
        ValueError: On invalid values.
    """
    do_sample = bool(args.do_sample)
    temperature = 1.0
    if args.temperature is not None:
        if args.temperature < 0:
            raise ValueError(f"--temperature must be >= 0, got {args.temperature}")
        if args.temperature == 0:
            do_sample = False
        else:
            do_sample, temperature = True, args.temperature
    return GenerationSettings(max_new_tokens=args.max_new_tokens, do_sample=do_sample, temperature=temperature,
                              top_p=args.top_p)


def media_from_args(args: argparse.Namespace, path: str, kind: str) -> Media:
    """Load ``path`` as ``kind`` with the sampling flags."""
    target_fps = args.fps if args.fps is not None else (1.0 if args.sampling == "fps" else None)
    return load_media(path, kind=kind, num_frames=args.num_frames, sampling=args.sampling, target_fps=target_fps,
                      max_frames=args.max_frames)
