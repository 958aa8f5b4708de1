"""Write tiny SigLIP, Qwen2 and Phi-3 models (with tokenizers) for the tiny configs, tests and the quickstart.

    python tools/make_tiny_models.py --out work_dirs/tiny_models

What it writes: videoccam/synthetic/tiny_models.py (shown below with --help).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from videoccam.synthetic import tiny_models
from videoccam.synthetic.tiny_models import PRETRAIN_STEPS, VISION_PRETRAIN_STEPS, make_tiny_models


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=tiny_models.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--out", default="work_dirs/tiny_models", help="output folder (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights (default: %(default)s)")
    parser.add_argument("--force", action="store_true", help="rewrite folders that already exist")
    parser.add_argument("--pretrain-steps", type=int, default=PRETRAIN_STEPS,
                        help="next-token training steps of each tiny LLM on synthetic chat text; 0 = random "
                        "weights (default: %(default)s)")
    parser.add_argument("--vision-pretrain-steps", type=int, default=VISION_PRETRAIN_STEPS,
                        help="training steps of the tiny SigLIP on labelled shape frames; 0 = random weights "
                        "(default: %(default)s)")
    args = parser.parse_args(argv)
    make_tiny_models(args.out, force=args.force, seed=args.seed, pretrain_steps=args.pretrain_steps,
                     vision_pretrain_steps=args.vision_pretrain_steps)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
