"""Check a custom video QA data file before training: every record, with the code training uses.

    python tools/validate_data.py data/example/train.jsonl --root data/example \
        --config configs/tiny/videoccam_tiny_qwen2_custom_finetune.py
    python tools/validate_data.py --config CONFIG            # every data file of the config (data_sources too)
    python tools/validate_data.py "data/shards/part-*.jsonl" --root data/media

Checks schema, placeholders vs media, that every video / frame folder / GIF / image exists and decodes (only
the frames the sampler takes), frame counts, subtitles files, and - with --config, or --tokenizer with
--num-queries and --max-length - the tokenised length against the text budget (LLM context minus the visual
tokens). Prints each bad record by index and id with its reason, then totals per category. Exit status 1 if
any record is bad (or the file cannot be read), 0 otherwise. See data/README.md.

With --config the sampling settings, tokenizer, template, num_queries and max_length come from the config's
train_dataloader.dataset; explicit flags override them. The media root is --root, else the data file's folder.
Without a data file, --config names the files: its data_path, or every file of every source of its data_sources
(each with the source's data_root). A glob pattern validates every file it matches, one report per file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from videoccam import quiet, xtuner_compat
from videoccam.cli import parse_cfg_options
from videoccam.config import build_from_cfg, load_config, resolve_template
from videoccam.dataset.sources import DataSource
from videoccam.dataset.validate import POOLS, validate_data
from videoccam.dataset.video_io import SAMPLINGS, FrameSampling


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="validate_data.py",
        description=__doc__.split("\n\n")[0],
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("data", nargs="?", help=".json list or .jsonl file, or a glob pattern (default: --config's)")
    parser.add_argument("--root", help="folder media paths are relative to (default: the data file's folder)")
    src = parser.add_argument_group("length check (one of)")
    src.add_argument("--config", help="training config: tokenizer, template, num_queries, max_length, sampling")
    src.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE",
                     help="override config values, as for xtuner train")  # fmt: skip
    src.add_argument("--tokenizer", help="tokenizer folder or hub name (with --num-queries and --max-length)")
    src.add_argument("--template", default=None,
                     help="xtuner PROMPT_TEMPLATE name for --tokenizer (default: qwen_chat)")  # fmt: skip
    src.add_argument("--num-queries", type=int, help="visual tokens per image or video (projector num_queries)")
    src.add_argument("--max-length", type=int, help="LLM context per sample, visual tokens included")
    smp = parser.add_argument_group("frame sampling (default: the config's, else uniform 16)")
    smp.add_argument("--num-frames", type=int, help="frames per video for uniform sampling")
    smp.add_argument("--sampling", choices=SAMPLINGS)
    smp.add_argument("--fps", type=float, dest="target_fps", help="target rate for --sampling fps")
    smp.add_argument("--max-frames", type=int, help="frame cap for --sampling fps")
    smp.add_argument("--folder-fps", type=float, help="frame rate of frame folders (default 1)")
    smp.add_argument("--decode-threads", type=int, help="decoder threads per video (0 = decoder's default)")
    run = parser.add_argument_group("run")
    run.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                     help="parallel decoders (default: %(default)s)")  # fmt: skip
    run.add_argument("--pool", choices=POOLS, default="thread", help="decode in threads or processes")
    run.add_argument("--no-decode", action="store_true", help="only check that media exist (no decoding)")
    run.add_argument("--json-report", metavar="FILE", help="also write the report as JSON")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    run.add_argument("--no-warnings", action="store_true", help="list only bad records, not warnings")
    return parser


def _from_config(path: str, options: Sequence[str]) -> dict[str, Any]:
    """Tokenizer, template, num_queries, max_length, sampling settings and data files of a config's train dataset."""
    cfg = load_config(path, parse_cfg_options(options))
    dataset = cfg.train_dataloader.dataset
    if dataset.get("data_sources"):
        sources = [DataSource.from_config(spec) for spec in dataset.data_sources]
    else:
        sources = [DataSource.from_config({"data_path": dataset.data_path, "data_root": dataset.get("data_root")})]
    return {
        "sources": sources,
        "tokenizer": build_from_cfg(dataset.tokenizer),
        "template": resolve_template(dataset.template),  # a dumped config holds its import path
        "num_queries": dataset.num_queries,
        "max_length": dataset.max_length,
        "num_frames": dataset.get("num_frames", 16),
        "sampling": dataset.get("sampling", "uniform"),
        "target_fps": dataset.get("target_fps"),
        "max_frames": dataset.get("max_frames") or dataset.num_queries,
        "folder_fps": dataset.get("folder_fps", 1.0),
        "decode_threads": dataset.get("decode_threads", 0),
    }


def _from_tokenizer(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict[str, Any]:
    if args.num_queries is None or args.max_length is None:
        parser.error("--tokenizer needs --num-queries and --max-length")
    from transformers import AutoTokenizer
    from xtuner.utils import PROMPT_TEMPLATE

    name = args.template or "qwen_chat"
    if name not in PROMPT_TEMPLATE:
        parser.error(f"unknown --template {name!r}; one of {sorted(PROMPT_TEMPLATE)}")
    return {
        "tokenizer": AutoTokenizer.from_pretrained(args.tokenizer, trust_remote_code=True),
        "template": PROMPT_TEMPLATE[name],
        "num_queries": args.num_queries,
        "max_length": args.max_length,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit status (1 if any record is bad)."""
    parser = _parser()
    args = parser.parse_args(argv)
    quiet.install()
    xtuner_compat.install()
    if args.config and args.tokenizer:
        parser.error("give --config or --tokenizer, not both")
    settings: dict[str, Any] = {}
    if args.config:
        settings = _from_config(args.config, args.cfg_options)
    elif args.tokenizer:
        settings = _from_tokenizer(args, parser)
    # explicit flags win over the config's values
    for key in ("num_queries", "max_length", "num_frames", "sampling", "target_fps", "max_frames", "folder_fps",
                "decode_threads"):  # fmt: skip
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    if args.template and args.config:
        from xtuner.utils import PROMPT_TEMPLATE

        settings["template"] = PROMPT_TEMPLATE[args.template]
    try:
        if args.data:
            source = DataSource.from_config({"data_path": args.data, "data_root": args.root})
            files = [(file, source.root_of(file)) for file in source.files()]
        elif "sources" in settings:
            files = [(file, source.root_of(file)) for source in settings["sources"] for file in source.files()]
        else:
            parser.error("give a data file, or --config to validate the config's data files")
        sampling = FrameSampling(
            num_frames=settings.get("num_frames", 16),
            sampling=settings.get("sampling", "uniform"),
            target_fps=settings.get("target_fps"),
            max_frames=settings.get("max_frames"),
            num_threads=settings.get("decode_threads", 0),
            folder_fps=settings.get("folder_fps", 1.0),
        )
        reports = [
            validate_data(
                file,
                root,
                tokenizer=settings.get("tokenizer"),
                template=settings.get("template"),
                num_queries=settings.get("num_queries"),
                max_length=settings.get("max_length"),
                sampling=sampling,
                workers=args.workers,
                pool=args.pool,
                decode=not args.no_decode,
                progress=not args.no_progress,
            )
            for file, root in files
        ]
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print("\n\n".join(report.format(show_warnings=not args.no_warnings) for report in reports))
    if len(reports) > 1:
        bad = sum(len(report.bad) for report in reports)
        print(f"\n{len(reports)} files: {sum(len(r.results) for r in reports)} records, {bad} bad")
    if args.json_report:
        Path(args.json_report).parent.mkdir(parents=True, exist_ok=True)
        content = reports[0].to_dict() if len(reports) == 1 else {"reports": [r.to_dict() for r in reports]}
        Path(args.json_report).write_text(json.dumps(content, indent=2, default=str) + "\n")
        print(f"JSON report: {args.json_report}")
    return 1 if any(report.bad for report in reports) else 0


if __name__ == "__main__":
    sys.exit(main())
