"""Write the synthetic coloured-shapes dataset (videos, images, text QA) of the tiny configs and the quickstart.

    python tools/make_synthetic_data.py --out work_dirs/synthetic_data

What it writes and why: videoccam/synthetic/shapes.py (shown below with --help).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from videoccam.synthetic import shapes
from videoccam.synthetic.video_writer import ENCODERS


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=shapes.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--out", default="work_dirs/synthetic_data", help="output folder (default: %(default)s)")
    parser.add_argument("--num-videos", type=int, default=400, help="training videos (default: %(default)s)")
    parser.add_argument("--num-images", type=int, default=100, help="training images (default: %(default)s)")
    parser.add_argument("--num-text", type=int, default=24, help="text-only records (default: %(default)s)")
    parser.add_argument("--num-val-videos", type=int, default=80, help="held-out videos (default: %(default)s)")
    parser.add_argument("--frames", type=int, default=32, help="frames per video (default: %(default)s)")
    parser.add_argument("--size", type=int, default=64, help="frame width and height (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument("--encoder", choices=ENCODERS, default="auto", help="video encoder (default: %(default)s)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing dataset")
    args = parser.parse_args(argv)
    try:
        result = shapes.generate(
            args.out, num_videos=args.num_videos, num_images=args.num_images, num_text=args.num_text,
            num_val_videos=args.num_val_videos, frames=args.frames, size=args.size, seed=args.seed,
            force=args.force, encoder=args.encoder,
        )  # fmt: skip
    except ValueError as error:
        parser.error(str(error))
    if result.skipped:
        print(f"{result.train_json} exists, nothing written (use --force to regenerate)")
    else:
        print(f"wrote {result.root}: train.json ({result.num_train} records), val.json ({result.num_val}), "
              f"captions.json ({result.num_captions}), metadata.json, videos/, images/")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
