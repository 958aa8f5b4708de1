"""The issue-12 benchmarks run end to end in their smoke modes (tiny sizes, seconds): plumbing, not timings."""

from __future__ import annotations

import json

from tests.conftest import load_tool


def test_bench_projector_smoke(tmp_path, capsys):
    assert load_tool("bench_projector").main(["--smoke", "--what", "attention,projector", "--json",
                                              str(tmp_path / "p.json")]) == 0  # fmt: skip
    rows = json.loads((tmp_path / "p.json").read_text())["rows"]
    assert {(r["what"], r["mode"]) for r in rows} >= {("attention", "train"), ("projector", "forward")}
    assert all(r["max_rel_diff"] < 1e-4 for r in rows)  # the block-sparse path is exact
    assert "speed-up" in capsys.readouterr().out


def test_bench_loss_smoke(tmp_path, capsys):
    assert load_tool("bench_loss").main(["--smoke", "--train-head", "--json", str(tmp_path / "l.json")]) == 0
    figures = json.loads((tmp_path / "l.json").read_text())
    assert figures["loss_relative_diff"] < 1e-5 and max(figures["diffs"].values()) < 1e-4
    assert "peak memory plain / chunked" in capsys.readouterr().out


def test_bench_long_video_smoke(tmp_path, capsys):
    assert load_tool("bench_long_video").main(["--smoke", "--json", str(tmp_path / "v.json")]) == 0
    rows = json.loads((tmp_path / "v.json").read_text())["rows"]
    assert [r["frames"] for r in rows] == [4, 16] and rows[0]["max_abs_diff"] < 1e-4
    assert "time per frame" in capsys.readouterr().out


def test_bench_train_step_smoke(tmp_path, capsys):
    assert load_tool("bench_train_step").main(["--smoke", "--json", str(tmp_path / "t.json")]) == 0
    figures = json.loads((tmp_path / "t.json").read_text())
    assert figures["flops"]["vision"] > 0 and figures["flops"]["projector"] > 0 and figures["flops"]["llm"] > 0
    assert set(figures["phases_s"]) >= {"data", "vision_fwd", "llm_bwd", "optimizer"} and figures["mfu"] > 0
    assert "MFU" in capsys.readouterr().out
