"""tools/bench_dataset_scale.py --smoke runs end to end: both datasets, every figure, the target lines."""

from __future__ import annotations

import json

from tests.conftest import load_tool


def test_smoke_prints_every_figure(tiny_models, tmp_path, capsys):
    figures = tmp_path / "figures.json"
    status = load_tool("bench_dataset_scale").main(["--smoke", "--data-dir", str(tmp_path / "data"),
                                                    "--tiny-models", str(tiny_models), "--json", str(figures)])
    out = capsys.readouterr().out
    assert status == 0
    assert "in-memory" in out and "targets at 300 records" in out and "worker USS growth" in out
    result = json.loads(figures.read_text())["300"]
    assert result["build"]["build_1"]["rows"] == result["build"]["build_2"]["rows"] == 300
    assert result["cached"]["rows"] == result["in_memory"]["rows"] == 300
    assert result["cached"]["pass"]["batches"] == result["in_memory"]["pass"]["batches"] == 10
    assert len(result["cached"]["pass"]["uss_growth_mib"]) == 2
    assert not list((tmp_path / "data").glob("index_*"))  # indexes removed, data kept for re-runs
