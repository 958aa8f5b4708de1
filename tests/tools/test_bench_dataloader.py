"""tools/bench_dataloader.py runs end to end on a few tiny generated videos and prints the ratio."""

from __future__ import annotations

import json

from tests.conftest import load_tool


def test_bench_prints_the_ratio(tiny_models, tmp_path, capsys):
    figures = tmp_path / "bench.json"
    status = load_tool("bench_dataloader").main([
        "--data-dir", str(tmp_path / "data"), "--tiny-models", str(tiny_models), "--num-videos", "2",
        "--frames", "24", "--size", "64x48", "--num-frames", "4", "--image-size", "32", "--repeats", "1",
        "--json", str(figures),
    ])  # fmt: skip
    out = capsys.readouterr().out
    assert status == 0
    assert "ratio dataset / raw decord:" in out and "dataset_hf_processor" in out
    result = json.loads(figures.read_text())
    assert result["ratio"] > 0 and set(result["frames_per_s"]) == {
        "dataset", "dataset_float32", "dataset_hf_processor", "raw_decord"}
