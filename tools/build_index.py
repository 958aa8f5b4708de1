"""Build the tokenised data index of a training config ahead of the run (e.g. on a CPU node).

    python tools/build_index.py configs/qwen2_5_7b/videoccam_qwen2_5_7b_stage2.py --workers 32
    python tools/build_index.py CONFIG --index-dir /shared/videoccam_index --cfg-options train_dataloader.dataset...

Checks and tokenises every record of every data file of the config's training dataset (its data_path, or each
source of its data_sources) with the config's tokenizer, template, max_length and num_queries, into the index
folder training opens (videoccam/dataset/index.py). A file whose index already exists under the same key is not
read again. Prints, per source, the records, the usable and skipped ones and the amount the mixture takes, then
where each index is and its size. Exit status 1 when a source with on_error="raise" has a bad record (the first
one is printed), 2 on a config or file error, else 0. Point --index-dir (or $VIDEOCCAM_INDEX_DIR, or the
config's index_dir) where the training ranks will look. See data/README.md, "The tokenised index".
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from videoccam import xtuner_compat
from videoccam.cli import parse_cfg_options


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="build_index.py", description=__doc__.split("\n\n")[0],
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("config", help="training config (.py)")
    parser.add_argument("--workers", type=int, default=None,
                        help="builder processes (default: the config's index_workers, else the CPU count, at most 16)")
    parser.add_argument("--index-dir", default=None,
                        help="where the indexes go (default: the config's index_dir, else $VIDEOCCAM_INDEX_DIR or "
                        "~/.cache/videoccam/index)")  # fmt: skip
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE",
                        help="override config values, as in xtuner train")
    args = parser.parse_args(argv)
    xtuner_compat.install()
    from videoccam.config import build_from_cfg, load_config
    from videoccam.dataset.records import RecordError

    try:
        cfg = load_config(args.config, parse_cfg_options(args.cfg_options))
        dataset_cfg = cfg.train_dataloader.dataset
        dataset_cfg.pop("feature_cache", None)  # the index needs no vision tower
        if args.workers is not None:
            dataset_cfg.index_workers = args.workers
        if args.index_dir is not None:
            dataset_cfg.index_dir = args.index_dir
        dataset_cfg.progress = not args.no_progress
        dataset = build_from_cfg(dataset_cfg)
    except RecordError as error:
        print(f"build_index: the data has a bad record (on_error='raise'): {error}", file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError, TypeError) as error:
        print(f"build_index: error: {error}", file=sys.stderr)
        return 2
    print(f"{len(dataset)} samples from {len(dataset.sources)} source(s); "
          f"{int(dataset.answer_token_counts.sum())} trained answer tokens")  # fmt: skip
    for index in dataset.indexes:
        meta = index.meta
        print(f"  {index.source}: {meta['num_records']} records, {meta['num_rows']} usable, {meta['num_errors']} "
              f"bad, {meta['num_truncated']} truncated -> {index.path} ({_size(index.path) / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
