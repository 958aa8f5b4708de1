"""Tests of videoccam/evaluation/report.py: atomic JSON without NaN, plain-text tables."""

from __future__ import annotations

import json
import math

from videoccam.evaluation.report import format_table, write_json


def test_write_json_replaces_nan(tmp_path) -> None:
    write_json(tmp_path / "r.json", {"a": math.nan, "b": [1.5, math.nan]})
    assert json.loads((tmp_path / "r.json").read_text()) == {"a": None, "b": [1.5, None]}


def test_format_table() -> None:
    text = format_table(["k", "v"], [["x", 1.234], ["y", None]])
    assert text.splitlines() == ["k     v", "-  ----", "x  1.23", "y     -"]
