"""Evaluate a Video-CCAM model on MVBench, Video-MME, MLVU or VideoVista.

Examples::

    python tools/eval.py mvbench --model work_dirs/hf_model --data data/MVBench --num-frames 16 --out eval_out
    python tools/eval.py videomme --model work_dirs/hf_model --data data/Video-MME \\
        --num-frames 16,32,64,96 --subtitles both --batch-size 4 --out eval_out
    python tools/eval.py mlvu --config configs/x.py --checkpoint work_dirs/x/iter_1000.pth --data data/MLVU --out o

Several GPUs, one process each (every node runs the same command; OUT must be a folder all nodes share)::

    torchrun --nproc_per_node=8 tools/eval.py videomme --model work_dirs/hf_model --data data/Video-MME --out o
    torchrun --nnodes=2 --node_rank=R --master_addr=HOST --master_port=29500 --nproc_per_node=8 tools/eval.py ...

Each process answers a share of the questions (whole videos, balanced by question count, the same batches as one
process) into its own ``predictions_f{N}.rank{R}.jsonl``; when all are done, rank 0 merges them and writes the
results. Re-running the same command continues where a previous run stopped (predictions are saved per answered
batch), with any number of processes. Results go to ``OUT/<benchmark>/results_f{N}[_{variant}].json`` and
``OUT/<benchmark>/summary.json``, predictions to ``OUT/<benchmark>/predictions_f{N}.jsonl``; a table is printed at
the end.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from videoccam import quiet, xtuner_compat
from videoccam.checkpoint import UnsafeCheckpointError
from videoccam.cli import add_model_args, check_model_args, parse_cfg_options, parse_frame_counts
from videoccam.evaluation import BENCHMARKS
from videoccam.evaluation.backend import build_scripted_backend, load_backend
from videoccam.evaluation.distributed import OtherRankError, RankGroup, Ranks, device_for_rank
from videoccam.evaluation.runner import evaluate
from videoccam.evaluation.videomme import VARIANT_NO_SUBS, VARIANT_SUBS


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("benchmark", choices=sorted(BENCHMARKS), help="benchmark to run")
    add_model_args(p, device="auto", dtype="auto")  # --dtype auto: bf16 on GPU, fp32 on CPU
    p.add_argument("--data", required=True, help="benchmark root folder (official layout)")
    p.add_argument("--out", required=True, help="output folder (results go to OUT/<benchmark>/)")
    p.add_argument("--num-frames", type=parse_frame_counts, default=[16],
                   help="frame count(s), comma-separated: 16 or 16,32,64,96 (default 16)")
    p.add_argument("--batch-size", type=int, default=1, help="questions per generate call (default 1)")
    p.add_argument("--subtitles", choices=["no", "yes", "both"], default="both",
                   help="Video-MME: without subtitles, with, or both (default both)")
    p.add_argument("--tasks", help="comma-separated task names (MVBench, MLVU) or question types (VideoVista)")
    p.add_argument("--limit", type=int,
                   help="only the first N questions of each task (MVBench, MLVU) or overall (Video-MME, VideoVista)")
    p.add_argument("--max-new-tokens", type=int, default=16, help="multiple-choice reply budget (default 16)")
    p.add_argument("--gen-max-new-tokens", type=int, default=512,
                   help="budget of open-ended replies, MLVU generation tasks (default 512)")
    p.add_argument("--overwrite", action="store_true", help="discard previous predictions in OUT/<benchmark>/")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    # Test and dry-run hooks: a scripted backend instead of a model, and a simulated crash.
    p.add_argument("--scripted-backend", help=argparse.SUPPRESS)
    p.add_argument("--fail-after", type=int, help=argparse.SUPPRESS)
    p.add_argument("--fail-rank", type=int, help=argparse.SUPPRESS)  # only this rank fails (default: every rank)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the evaluation; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    try:
        ranks = Ranks.from_env()
        device = None if args.scripted_backend else device_for_rank(args.device, ranks)
    except ValueError as error:
        parser.error(str(error))
    if args.scripted_backend:
        if args.model or args.config or args.checkpoint:
            parser.error("--scripted-backend replaces the model; drop --model/--config/--checkpoint")
    else:
        try:
            check_model_args(args)
            cfg_options = parse_cfg_options(args.cfg_options)
        except (ValueError, FileNotFoundError) as error:
            parser.error(str(error))
        if args.fail_after is not None or args.fail_rank is not None:
            parser.error("--fail-after only works with --scripted-backend")
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else None
    benchmark = BENCHMARKS[args.benchmark](args.data, tasks=tasks)
    variants = None
    if args.benchmark == "videomme":
        variants = {"no": [VARIANT_NO_SUBS], "yes": [VARIANT_SUBS], "both": [VARIANT_NO_SUBS, VARIANT_SUBS]}[
            args.subtitles]

    group = RankGroup(ranks)  # before the model loads: a launch that cannot connect fails at once
    try:
        if args.scripted_backend:
            fail = args.fail_rank is None or args.fail_rank == ranks.rank
            backend = build_scripted_backend(args.scripted_backend, fail_after=args.fail_after if fail else None)
            model_id = f"scripted:{args.scripted_backend}"
        else:
            quiet.install()
            xtuner_compat.install()  # entry point: --config loads a training config (xtuner, mmengine)
            backend = load_backend(args.model, args.config, args.checkpoint, device=device, dtype=args.dtype,
                                   cfg_options=cfg_options)  # fmt: skip
            model_id = os.path.abspath(args.model) if args.model else (
                f"{os.path.abspath(args.config)}::{os.path.abspath(args.checkpoint)}")
        evaluate(
            benchmark,
            backend,
            args.num_frames,
            args.out,
            batch_size=args.batch_size,
            variants=variants,
            limit=args.limit,
            max_new_tokens=args.max_new_tokens,
            gen_max_new_tokens=args.gen_max_new_tokens,
            run_info={"model": model_id, "data": os.path.abspath(args.data)},
            overwrite=args.overwrite,
            progress=not args.no_progress,
            group=group,
        )
    except OtherRankError as error:  # the failing rank raises its own error
        logging.getLogger("eval").error("%s", error)
        return 1
    except UnsafeCheckpointError as error:  # every rank loads the same file and refuses it
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        group.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
