"""Write tiny synthetic copies of the MVBench, Video-MME, MLVU and VideoVista layouts.

Example::

    python tools/make_synthetic_benchmarks.py --out data/synthetic_bench
    python tools/eval.py mvbench --model MODEL --data data/synthetic_bench/mvbench --out eval_out

Each benchmark goes to ``OUT/<benchmark>/`` in its official layout, with 64x64 synthetic videos (a few seconds
to write); see ``videoccam/synthetic/benchmarks.py`` for what is in them.
"""

from __future__ import annotations

import argparse
import sys

from videoccam.synthetic.benchmarks import MAKERS, make_all


def main(argv: list[str] | None = None) -> int:
    """Write the layouts; returns the exit status."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--bench", default="all", choices=["all", *MAKERS], help="which benchmark (default all)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    args = p.parse_args(argv)
    benches = None if args.bench == "all" else [args.bench]
    for name, root in make_all(args.out, benches, seed=args.seed).items():
        print(f"{name}: {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
