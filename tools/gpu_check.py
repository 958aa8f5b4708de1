"""One command that proves a GPU machine: trains, exports and chats with the tiny stage 2 and measures at real sizes.

    python tools/gpu_check.py [--quick] [--out report.json]   # one CUDA GPU, offline: at most 8 minutes (--quick: 3)
    python tools/gpu_check.py --dry-run                        # CPU, tiny sizes: every check's code (CI runs this)

Checks, in order (videoccam/gpu_check.py): ``environment`` (GPU, driver, CUDA, torch, transformers, flash-attn,
bitsandbytes, DeepSpeed and its ops, NCCL; a line with the fix for each missing or mismatched piece); the tiny
stage 2 trained on the GPU in fp32 (``tiny_fp32``, the reference) and in bf16 (``tiny_bf16``: the loss falls and
ends within 10% of the fp32 run's), with flash-attention 2, with DeepSpeed ZeRO-2 on the one GPU
(``configs/deepspeed/zero2_bf16.json``) and with the QLoRA settings (4-bit LLM), each exported as the Hugging Face
folder and answering through ``model.chat`` on the GPU; then ``tools/bench_train_step.py --real-sizes`` (MFU),
``bench_projector.py`` (dense vs block-sparse, 16 and 96 frames, forward and training), ``bench_loss.py`` (chunked
vs plain), ``bench_long_video.py`` (streaming 16 vs 1,024 frames) and the memory planner against
``torch.cuda.max_memory_allocated`` of the real-size training step.

Runs with the machine's torch and transformers (not only the training pins; it imports no mmengine or xtuner):
``pip install peft accelerate safetensors`` on top of them, plus DeepSpeed / bitsandbytes / flash-attn for their
checks (a check whose package is missing is reported as skipped, with the install line). Writes one JSON report
(``--out``, default ``work_dirs/gpu_check/report.json``), prints a table, and exits 1 naming the failed checks.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def build_parser() -> argparse.ArgumentParser:
    from videoccam.gpu_check import CHECKS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="shorter trainings and benchmarks (about 3 minutes)")
    parser.add_argument("--dry-run", action="store_true",
                        help="on the CPU at tiny sizes, with stated CPU stand-ins for what needs the GPU")
    parser.add_argument("--out", default=None, help="the JSON report (default: WORK_DIR/report.json)")
    parser.add_argument("--work-dir", default=str(ROOT / "work_dirs" / "gpu_check"),
                        help="tiny models and exported folders (default: %(default)s)")
    parser.add_argument("--only", nargs="+", choices=CHECKS, metavar="CHECK",
                        help=f"run only these checks ({', '.join(CHECKS)})")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    from videoccam.gpu_check import Options, format_table, report, run_checks

    if not args.dry_run and not torch.cuda.is_available():
        print("gpu_check: error: no CUDA device (torch.cuda.is_available() is False); run it on a GPU machine, or "
              "--dry-run to run the checks' code on the CPU", file=sys.stderr)  # fmt: skip
        return 2
    options = Options(dry_run=args.dry_run, quick=args.quick, work_dir=Path(args.work_dir), only=args.only)
    start = time.perf_counter()
    results = run_checks(options)
    data = report(results, options, time.perf_counter() - start)
    out = Path(args.out) if args.out else options.work_dir / "report.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=2, default=str) + "\n")
    print(format_table(results))
    print(f"report: {out} ({data['seconds']:.0f} s{', dry run on the CPU' if args.dry_run else ''})")
    if data["failed"]:
        print(f"FAILED: {', '.join(data['failed'])}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
