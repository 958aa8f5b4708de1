"""Write tiny replicas of the released Video-CCAM layouts (v1.0/v1.1 xtuner layout, v1.2 single folder) whose
remote code is not this project's, for the released-model fine-tuning configs, tests and docs.

    python tools/make_released_replicas.py --out work_dirs/released_replicas

What it writes: videoccam/synthetic/released_replicas.py (shown below with --help).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from videoccam.synthetic import released_replicas


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=released_replicas.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--out", default="work_dirs/released_replicas", help="output folder (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights (default: %(default)s)")
    parser.add_argument("--force", action="store_true", help="rewrite folders that already exist")
    parser.add_argument("--base-models", default=None,
                        help="an existing tools/make_tiny_models.py output to build on (default: write OUT/base)")
    args = parser.parse_args(argv)
    released_replicas.make_released_replicas(args.out, force=args.force, seed=args.seed, base_models=args.base_models)
    return 0


if __name__ == "__main__":
    sys.exit(main())
