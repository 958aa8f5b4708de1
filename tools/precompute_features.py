"""Fill the frozen-SigLIP feature cache of a stage-1 config before training (with a progress bar).

    python tools/precompute_features.py configs/qwen2_5_7b/videoccam_qwen2_5_7b_stage1.py --cache-dir /nvme/cache \\
        --device cuda
    python tools/train.py CONFIG --cfg-options train_dataloader.dataset.feature_cache.cache_dir=/nvme/cache ...

Builds the config's training dataset with ``videoccam.dataset.feature_cache`` on (the same vision tower, layer,
frame sampling and preprocessing as training) and loads every media sample once: a cached sample is a hit, a
missing or stale one is decoded, encoded on ``--device`` and stored. Prints hits, misses and the cache's size.
Training then reads the features instead of decoding and running SigLIP; pass the same cache folder to it (the
``--cfg-options`` key above, or ``enable_feature_cache`` in a script). Stage 1 only: a config that trains the
vision tower (LoRA or unfrozen) is refused.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from videoccam import quiet, xtuner_compat
from videoccam.cli import parse_cfg_options


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("config", help="a stage-1 training config (.py)")
    parser.add_argument("--cache-dir", required=True, help="the cache folder (created if missing)")
    parser.add_argument("--device", default="cpu", help="where SigLIP encodes misses (cpu, cuda)")
    parser.add_argument("--dtype", default=None, choices=("float16", "bfloat16", "float32"),
                        help="storage dtype (default: the vision tower's, exact)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N samples")
    parser.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE",
                        help="override config values, as in xtuner train")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet.install()
    xtuner_compat.install()
    from tqdm import tqdm

    from videoccam.config import build_from_cfg, load_config
    from videoccam.dataset.feature_cache import enable_feature_cache

    try:
        cfg = load_config(args.config, parse_cfg_options(args.cfg_options))
        enable_feature_cache(cfg, args.cache_dir, device=args.device, dtype=args.dtype)
    except (ValueError, FileNotFoundError) as e:
        print(f"precompute_features: error: {e}", file=sys.stderr)
        return 2
    dataset = build_from_cfg(cfg.train_dataloader.dataset)
    cache = dataset.feature_cache
    media = [int(i) for i in (dataset.num_media > 0).nonzero()[0]][: args.limit]
    skipped = 0
    for i in tqdm(media, desc="features", unit="sample"):
        if "skipped" in dataset[i]:  # unreadable media with on_error="skip": reported by the dataset
            skipped += 1
    files = list(Path(args.cache_dir).rglob("*.safetensors"))
    size = sum(f.stat().st_size for f in files)
    print(f"{len(media)} media samples: {cache.hits} cached, {cache.misses} computed, {skipped} skipped; "
          f"{args.cache_dir}: {len(files)} files, {size / 2**30:.2f} GiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
