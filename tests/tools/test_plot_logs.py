"""tools/plot_logs.py: curves from mmengine's json scalars (a real run's are drawn in tests/tools/test_train.py)."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from tests.conftest import load_tool


def _write_run(work_dir: Path, stamp: str, steps: range, loss0: float, with_grad_norm: bool = True) -> None:
    vis = work_dir / stamp / "vis_data"
    vis.mkdir(parents=True)
    lines = []
    for s in steps:
        record = {"lr": 1e-3 * s / steps.stop, "loss": loss0 / s, "time": 0.5, "iter": s, "step": s}
        if with_grad_norm:
            record["grad_norm"] = 10.0 / s
        lines.append(json.dumps(record))
    (vis / "scalars.json").write_text("\n".join(lines) + "\n")


def test_resumed_run_is_merged_and_drawn(tmp_path):
    plot_logs = load_tool("plot_logs")
    work = tmp_path / "run"
    _write_run(work, "20260101_000000", range(1, 11), 4.0)
    _write_run(work, "20260101_010000", range(6, 21), 2.0)  # resumed from iteration 5: steps 6-10 again
    records = plot_logs.read_scalars(work)
    assert [r["step"] for r in records] == list(range(1, 21))
    assert records[5]["loss"] == 2.0 / 6 and records[4]["loss"] == 4.0 / 5  # the later run wins
    assert plot_logs.main([str(work)]) == 0
    with Image.open(work / "curves.png") as png:
        assert png.format == "PNG" and png.size == (800, 780)  # 3 panels, 8 x 7.8 inches at 100 dpi


def test_two_stages_one_after_the_other_and_missing_keys(tmp_path, capsys):
    plot_logs = load_tool("plot_logs")
    _write_run(tmp_path / "stage1", "20260101_000000", range(1, 6), 4.0)
    _write_run(tmp_path / "stage2", "20260101_010000", range(1, 6), 3.0, with_grad_norm=False)
    out = tmp_path / "both.png"
    argv = [str(tmp_path / "stage1"), str(tmp_path / "stage2"), "--sequential", "--labels", "stage 1", "stage 2",
            "--out", str(out), "--keys", "loss", "grad_norm", "tflops_per_device"]
    assert plot_logs.main(argv) == 0
    assert out.stat().st_size > 10_000
    assert "stage 1 5 logged iterations, stage 2 5 logged iterations" in capsys.readouterr().out


def test_errors_name_the_problem(tmp_path, capsys):
    plot_logs = load_tool("plot_logs")
    assert plot_logs.main([str(tmp_path)]) == 1
    assert "no mmengine json log" in capsys.readouterr().err
    _write_run(tmp_path / "r", "20260101_000000", range(1, 3), 1.0)
    assert plot_logs.main([str(tmp_path / "r"), "--keys", "nothing_logged"]) == 1
    assert plot_logs.main([str(tmp_path / "r"), "--labels", "a", "b"]) == 2
