"""Convert a training checkpoint into a Hugging Face folder that loads without this package.

    python tools/convert_to_hf.py CONFIG CHECKPOINT OUT_DIR [--save-format huggingface|xtuner]
        [--fp32 | --dtype float16|bfloat16|float32] [--max-shard-size 5GB] [--cfg-options key=value ...]

CHECKPOINT is an mmengine ``.pth`` file, a DeepSpeed checkpoint folder, or a work dir (its
``last_checkpoint`` is used). The model is built from CONFIG with its real base weights (unlike
``xtuner convert pth_to_hf``, which leaves them on the meta device), so the LoRA adapters can be merged.

``--save-format huggingface`` (default) writes the single folder of design.md section 5: merged safetensors
weights, ``config.json`` with ``auto_map``, the model code, tokenizer with chat template, image processor and
generation config. Load it with ``AutoModel.from_pretrained(OUT_DIR, trust_remote_code=True)``,
``AutoTokenizer`` and ``AutoImageProcessor``, then ``model.chat(...)``; or chat with
``python tools/chat.py --model OUT_DIR``. Weights keep the training dtype unless ``--dtype``/``--fp32``.

``--save-format xtuner`` writes xtuner's layout (``llm_adapter/``, ``visual_encoder_adapter/``,
``projector/``), the same as ``xtuner convert pth_to_hf``; the LLM part is float16 unless ``--fp32``.

``--save-format released`` (a model fine-tuned from a released Video-CCAM model: the config has
``released_path``) writes the layout of that release: v1.0 / v1.1 adapters + ``projector/`` with its own code,
or the v1.2 folder with its own code and tensor names, each tensor in its released dtype unless ``--fp32``
(videoccam/export/released_layout.py). Upstream's loaders load it as they load the release.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from videoccam import quiet, xtuner_compat
from videoccam.cli import DTYPE_NAMES, parse_cfg_options, resolve_dtype


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="training config file")
    parser.add_argument("checkpoint", help="checkpoint: .pth file, DeepSpeed folder, or work dir")
    parser.add_argument("out", help="output folder")
    parser.add_argument("--save-format", choices=("huggingface", "xtuner", "released"), default="huggingface")
    precision = parser.add_mutually_exclusive_group()
    precision.add_argument("--fp32", action="store_true", help="save float32 weights (= --dtype float32)")
    precision.add_argument("--dtype", choices=sorted(set(DTYPE_NAMES.values())), default=None, help="dtype of the saved weights")
    parser.add_argument("--max-shard-size", default="5GB", help="largest weight file (default 5GB)")
    parser.add_argument(
        "--cfg-options",
        nargs="+",
        default=None,
        metavar="KEY=VALUE",
        help="config overrides key=value, e.g. model.llm.pretrained_model_name_or_path=/models/qwen2",
    )
    return parser.parse_args(argv)


def _listing(out: Path) -> list[str]:
    lines = []
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        size = path.stat().st_size
        human = f"{size / 2**20:.1f} MiB" if size >= 2**20 else f"{size / 2**10:.1f} KiB"
        lines.append(f"  {path.relative_to(out)}  ({human})")
    return lines


def main(argv: list[str] | None = None) -> int:
    quiet.install()
    xtuner_compat.install()
    args = parse_args(argv)
    import torch

    from videoccam.export.hf_folder import save_hf_folder
    from videoccam.export.released_layout import save_released_layout
    from videoccam.export.xtuner_layout import save_xtuner_layout
    from videoccam.inference.load import load_trained_model

    dtype = torch.float32 if args.fp32 else resolve_dtype(args.dtype)
    if args.save_format == "xtuner" and dtype not in (None, torch.float32, torch.float16):
        print(
            f"error: the xtuner layout saves the LLM part in float16 (default) or float32 (--fp32), not {args.dtype}",
            file=sys.stderr,
        )
        return 1
    if args.save_format == "released" and dtype not in (None, torch.float32):
        print(f"error: the released layout keeps the release's dtypes (default) or float32 (--fp32), not {args.dtype}",
              file=sys.stderr)  # fmt: skip
        return 1
    try:
        model, cfg = load_trained_model(args.config, args.checkpoint, parse_cfg_options(args.cfg_options))
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1

    out = Path(args.out)
    try:
        with torch.no_grad():
            if args.save_format == "huggingface":
                save_hf_folder(
                    model,
                    cfg,
                    out,
                    dtype=dtype,
                    save_pretrained_kwargs={"max_shard_size": args.max_shard_size},
                    merge_inplace=True,
                )
            elif args.save_format == "released":
                save_released_layout(model, cfg, out, fp32=dtype == torch.float32, max_shard_size=args.max_shard_size)
            else:
                save_xtuner_layout(
                    model,
                    cfg,
                    out,
                    fp32=dtype == torch.float32,
                    save_pretrained_kwargs={"max_shard_size": args.max_shard_size, "safe_serialization": True},
                )
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    try:  # the config as used, overrides applied, without read_base() imports of sibling files
        cfg.dump(str(out / "xtuner_config.py"))
    except Exception as e:  # noqa: BLE001 - provenance only; say so and keep the original file instead
        print(f"note: could not dump the merged config ({type(e).__name__}: {e}); copying {args.config} instead")
        shutil.copyfile(args.config, out / "xtuner_config.py")
    print(f"wrote {args.save_format} format to {out}:")
    print("\n".join(_listing(out)))
    if args.save_format == "huggingface":
        print(f"chat with it: python tools/chat.py --model {out} --video VIDEO --prompt 'What happens?'")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
