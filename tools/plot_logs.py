"""Draw the loss, learning-rate and grad-norm curves of mmengine runs into a PNG (no TensorBoard needed).

    python tools/plot_logs.py WORK_DIR [WORK_DIR ...] [--out curves.png] [--labels a b] [--sequential]

Reads the json scalars mmengine writes for every run, ``WORK_DIR/<timestamp>/vis_data/scalars.json`` (the
LocalVisBackend; the LoggerHook's ``vis_data/<timestamp>.json`` when that file is missing). A work dir that was
resumed holds several timestamp folders: their points are merged by iteration, the later run winning. Each
WORK_DIR is one line in every panel; ``--sequential`` puts them one after the other on the iteration axis
(stage 1 then stage 2) instead of overlaying them. Keys that a run never logged (``grad_norm`` without gradient
clipping) leave their panel empty with a note. Extra panels: ``--keys loss lr grad_norm tflops_per_device``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

DEFAULT_KEYS = ("loss", "lr", "grad_norm")
TITLES = {"loss": "training loss", "lr": "learning rate", "grad_norm": "gradient norm (before clipping)"}


def _json_lines(path: Path) -> list[dict]:
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line:
            record = json.loads(line)
            if isinstance(record, dict) and "step" in record:
                records.append(record)
    return records


def read_scalars(work_dir: Path) -> list[dict]:
    """The logged training scalars of ``work_dir``, one dict per logged iteration, sorted by ``step``.

    Raises:
        FileNotFoundError: if ``work_dir`` holds no mmengine json log.
    """
    by_step: dict[int, dict] = {}
    found = []
    for run in sorted(p for p in work_dir.glob("*/vis_data") if p.is_dir()):  # timestamp folders sort by time
        scalars = run / "scalars.json"
        files = [scalars] if scalars.is_file() else sorted(run.glob("[0-9]*_[0-9]*.json"))
        for path in files:
            found.append(path)
            for record in _json_lines(path):
                by_step[int(record["step"])] = record  # a resumed run overrides the steps it repeats
    if not found:
        raise FileNotFoundError(
            f"no mmengine json log under {work_dir} (expected {work_dir}/<timestamp>/vis_data/scalars.json); "
            "is it the --work-dir of a training run?"
        )
    return [by_step[s] for s in sorted(by_step)]


def plot(runs: list[tuple[str, list[dict]]], keys: list[str], out: Path, sequential: bool) -> int:
    """Draw one panel per key, one line per run; returns the number of points drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(keys), 1, figsize=(8, 2.6 * len(keys)), sharex=True, squeeze=False)
    offset, boundaries, drawn = 0, [], 0
    for label, records in runs:
        steps = [int(r["step"]) for r in records]
        for ax, key in zip(axes[:, 0], keys):
            points = [(s + offset, float(r[key])) for s, r in zip(steps, records)
                      if key in r and isinstance(r[key], (int, float)) and math.isfinite(r[key])]  # fmt: skip
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, marker="." if len(points) < 40 else None, label=label)
                drawn += len(points)
        if sequential and steps:
            offset += max(steps)
            boundaries.append(offset)
    for ax, key in zip(axes[:, 0], keys):
        ax.set_title(TITLES.get(key, key), fontsize=10)
        ax.grid(alpha=0.3)
        if not ax.lines:
            ax.text(0.5, 0.5, f"'{key}' was not logged", transform=ax.transAxes, ha="center", va="center")
            continue
        if key == "grad_norm" and all(y > 0 for line in ax.lines for y in line.get_ydata()):
            ax.set_yscale("log")
        if len(runs) > 1:
            ax.legend(fontsize=8)
        for x in boundaries[:-1]:  # where the next run starts
            ax.axvline(x, color="grey", linestyle="--", linewidth=0.8)
    axes[-1, 0].set_xlabel("iteration" + (" (runs one after another)" if sequential and len(runs) > 1 else ""))
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return drawn


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("work_dirs", nargs="+", type=Path, help="training work dirs (--work-dir of xtuner train)")
    parser.add_argument("--out", type=Path, help="PNG to write (default: FIRST_WORK_DIR/curves.png)")
    parser.add_argument("--labels", nargs="+", help="one legend label per work dir (default: folder names)")
    parser.add_argument("--keys", nargs="+", default=list(DEFAULT_KEYS), help="logged scalars to draw, one panel each")
    parser.add_argument("--sequential", action="store_true", help="runs one after another on the iteration axis")
    args = parser.parse_args(argv)
    labels = args.labels or [p.name for p in args.work_dirs]
    if len(labels) != len(args.work_dirs):
        print(f"error: {len(labels)} labels for {len(args.work_dirs)} work dirs", file=sys.stderr)
        return 2
    try:
        runs = [(label, read_scalars(path)) for label, path in zip(labels, args.work_dirs)]
    except (FileNotFoundError, json.JSONDecodeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    out = args.out or args.work_dirs[0] / "curves.png"
    drawn = plot(runs, list(args.keys), out, args.sequential)
    if drawn == 0:
        print(f"error: none of {args.keys} was logged in {[str(p) for p in args.work_dirs]}", file=sys.stderr)
        return 1
    print(f"wrote {out}: {', '.join(f'{label} {len(r)} logged iterations' for label, r in runs)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
