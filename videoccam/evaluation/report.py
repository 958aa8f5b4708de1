"""The results of an evaluation run: ``results_f{N}[_{variant}].json``, ``summary.json`` and the printed tables.

JSON is written atomically (a crash never leaves half a file) with NaN as null.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from videoccam.evaluation.benchmark import DEFAULT_VARIANT, Benchmark

__all__ = ["format_table", "results_name", "summary_table", "write_json", "write_summary"]


def results_name(num_frames: int, variant: str, variants: Sequence[str]) -> str:
    if len(variants) == 1 and variant == DEFAULT_VARIANT:
        return f"results_f{num_frames}.json"
    return f"results_f{num_frames}_{variant}.json"


def write_summary(bench_dir: Path, results: dict[int, dict[str, dict[str, Any]]]) -> None:
    path = bench_dir / "summary.json"
    summary: dict[str, Any] = {}
    if path.exists():
        summary = json.loads(path.read_text(encoding="utf-8"))
    for nf, by_variant in results.items():
        for variant, r in by_variant.items():
            summary.setdefault(str(nf), {})[variant] = {
                "headline": r["headline"],
                "unparseable": r["metrics"].get("overall", {}).get("unparseable"),
                "num_questions": r["num_questions"],
                "limit": r["limit"],
            }
    write_json(path, dict(sorted(summary.items(), key=lambda kv: int(kv[0]))))


def summary_table(benchmark: Benchmark, results: dict[int, dict[str, dict[str, Any]]]) -> str:
    """Printable tables: headline numbers per frame count and variant, then the per-task breakdown."""
    rows, header = [], ["frames"]
    multi = len(benchmark.variants) > 1
    if multi:
        header.append("variant")
    head_cols: list[str] = []
    for by_variant in results.values():
        for r in by_variant.values():
            head_cols += [c for c in r["headline"] if c not in head_cols]
    header += head_cols + ["unparseable", "questions"]
    for nf, by_variant in results.items():
        for variant, r in by_variant.items():
            row: list[Any] = [nf] + ([variant] if multi else [])
            row += [r["headline"].get(c) for c in head_cols]
            row += [r["metrics"].get("overall", {}).get("unparseable"), r["num_questions"]]
            rows.append(row)
    text = f"== {benchmark.name} ==\n" + format_table(header, rows)

    cols = [(nf, v) for nf, by_variant in results.items() for v in by_variant]
    breakdowns = {c: benchmark.breakdown(results[c[0]][c[1]]["metrics"]) for c in cols}
    keys: list[str] = []
    for b in breakdowns.values():
        keys += [k for k in b if k not in keys]
    if keys:
        b_header = ["task"] + [f"f{nf}" + (f" {v}" if multi else "") for nf, v in cols]
        b_rows = [[k] + [breakdowns[c].get(k) for c in cols] for k in keys]
        text += "\n\n" + format_table(b_header, b_rows)
    return text


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON atomically (temporary file + rename), so a crash never leaves half a results file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(_finite(obj), f, indent=2, ensure_ascii=False)
        f.write("\n")
    os.replace(tmp, path)


def _finite(obj: Any) -> Any:
    """Replace NaN by None so the JSON is standard."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def format_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Plain-text table; floats are shown with two decimals, None/NaN as "-"."""

    def cell(v: Any) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "-"
        if isinstance(v, float):
            return f"{v:.2f}"
        return str(v)

    table = [[str(h) for h in header]] + [[cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = []
    for n, row in enumerate(table):
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
