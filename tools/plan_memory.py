"""Estimate per-GPU memory of a Video-CCAM training config before renting GPUs, without loading weights.

    python tools/plan_memory.py configs/qwen2_5_7b/videoccam_qwen2_5_7b_stage2.py --gpus 8 --zero 2
    python tools/plan_memory.py CONFIG --gpus 8 --zero 3 --offload --batch-size 4 --frames 32 --json

The model parts are built empty (meta device) from their config.json, or from the built-in table of the released
architectures when the hub is unreachable; see videoccam/memory_plan.py for what each row counts and
configs/README.md for how the estimate compares with measured memory. The per-device batch, frames and
checkpointing default to the config's values; text tokens default to the whole text budget (max_length minus
the visual tokens), the worst case a length-grouped batch reaches.
"""

from __future__ import annotations

import argparse
import sys

from videoccam import quiet, xtuner_compat
from videoccam.cli import parse_cfg_options
from videoccam.config import load_config
from videoccam.memory_plan import plan_memory, plan_to_json


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="training config (.py)")
    parser.add_argument("--gpus", type=int, default=None, help="data-parallel GPUs (default: the config's num_gpus)")
    parser.add_argument("--zero", type=int, choices=(0, 1, 2, 3), default=2,
                        help="DeepSpeed ZeRO stage; 0 = no DeepSpeed (mmengine optimizer wrapper)")
    parser.add_argument("--offload", action="store_true", help="DeepSpeed CPU offload (optimizer; +params on ZeRO-3)")
    parser.add_argument("--batch-size", type=int, default=None, help="per-device micro-batch")
    parser.add_argument("--frames", type=int, default=None, help="frames per video")
    parser.add_argument("--text-tokens", type=int, default=None,
                        help="text tokens per sample (default: max_length - visual tokens)")
    parser.add_argument("--answer-tokens", type=int, default=None,
                        help="labelled answer tokens per sample, where logits are built (default: all text tokens)")
    parser.add_argument("--media-per-sample", type=int, default=1, help="images/videos per sample (0: text-only)")
    parser.add_argument("--no-checkpointing", action="store_true", help="activation checkpointing off")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="kernel assumptions")
    parser.add_argument("--overhead-gib", type=float, default=None,
                        help="fixed runtime allowance per GPU (default 2 on cuda, 0 on cpu)")
    parser.add_argument("--arch-source", choices=("auto", "config", "table"), default="auto",
                        help="where architectures come from: config.json, the built-in table, or auto")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE",
                        help="override config values, as in xtuner train")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet.install()
    xtuner_compat.install()
    try:
        cfg = load_config(args.config, parse_cfg_options(args.cfg_options))
        gpus = args.gpus if args.gpus is not None else int(cfg.get("num_gpus", 1) or 1)
        plan = plan_memory(
            cfg,
            gpus=gpus,
            zero=args.zero,
            offload=args.offload,
            batch_size=args.batch_size,
            frames=args.frames,
            text_tokens=args.text_tokens,
            answer_tokens=args.answer_tokens,
            media_per_sample=args.media_per_sample,
            checkpointing=False if args.no_checkpointing else None,
            device=args.device,
            overhead_gib=args.overhead_gib,
            arch_source=args.arch_source,
            config_name=args.config,
        )
    except (ValueError, FileNotFoundError) as e:
        print(f"plan_memory: error: {e}", file=sys.stderr)
        return 2
    print(plan_to_json(plan) if args.json else plan.format_table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
