"""Write the media of the example custom dataset (data/example/) that data/README.md walks through.

    python tools/make_example_data.py            # writes data/example/{videos,frames,gifs,images,subtitles}/

What is in it: videoccam/synthetic/example_data.py. train.jsonl is written when the output folder has none, or
with ``--jsonl`` (it is the file that is checked in).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from videoccam.synthetic.example_data import generate

ROOT = Path(__file__).resolve().parents[1]


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "data/example"), help="output folder (default: data/example)")
    parser.add_argument("--jsonl", action="store_true", help="also (re)write train.jsonl")
    args = parser.parse_args(argv)
    out = generate(args.out, write_jsonl=args.jsonl)
    print(f"wrote the example media under {out}" + (" and train.jsonl" if args.jsonl else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
