"""tools/bench_eval_scale.py in its smoke mode (scripted backend, 40 questions): plumbing, not timings."""

from __future__ import annotations

import json

import pytest

from tests.conftest import load_tool


@pytest.mark.slow
def test_bench_eval_scale_smoke(tmp_path, capsys):
    out = tmp_path / "figures.json"
    assert load_tool("bench_eval_scale").main(["--smoke", "--work-dir", str(tmp_path), "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert [r["procs"] for r in figures["rows"]] == [1, 2] and figures["predictions_equal"] is True
    assert all(r["questions"] == 40 and r["answer_qps"] > 0 and r["end_to_end_qps"] > 0 for r in figures["rows"])
    assert figures["rows"][0]["answer_speedup"] == 1.0
    assert "answering q/s" in capsys.readouterr().out
