"""tools/quickstart.py: the seed reaches every step, each step's wall and CPU time, the closing summary. (The whole
run takes minutes; README "Does the trained model see its video?" quotes its figures.)"""

from __future__ import annotations

import time

import pytest
import torch

from tests.conftest import load_tool
from videoccam.evaluation.grounding import AccuracyReport, GroundingReport
from videoccam.evaluation.metrics import Tally

quickstart = load_tool("quickstart")


def test_the_seed_reaches_the_models_the_data_and_both_stages(monkeypatch, tmp_path, capsys):
    calls = {}
    monkeypatch.setattr("videoccam.synthetic.tiny_models.make_tiny_models",
                        lambda *args, **kwargs: calls.setdefault("models", kwargs))  # fmt: skip
    monkeypatch.setattr("videoccam.synthetic.shapes.generate", lambda *args, **kwargs: calls.setdefault("data", kwargs))

    def run_stage(name, config, work_dir, extra, force, launcher=None):
        calls[name] = extra
        if name == "stage 2":
            raise quickstart.StageFailed("stop here")
        return tmp_path / "stage1.pth"

    monkeypatch.setattr(quickstart, "run_stage", run_stage)
    monkeypatch.chdir(tmp_path)  # main() changes to the repository root: restored afterwards
    threads = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    try:
        assert quickstart.main(["--seed", "7", "--work-dir", str(tmp_path / "qs")]) == 1
        assert torch.get_num_threads() == quickstart.TORCH_THREADS
    finally:
        torch.set_num_threads(threads)
    assert calls["models"]["seed"] == 7 and calls["data"]["seed"] == 7
    assert calls["stage 1"][:2] == ["--seed", "7"] and calls["stage 2"][:2] == ["--seed", "7"]
    assert quickstart._env()["OMP_NUM_THREADS"] == str(quickstart.TORCH_THREADS)
    out = capsys.readouterr()
    assert "QUICKSTART FAILED: stop here" in out.err
    assert "tiny models" in out.out and "s CPU" in out.out  # the steps' times, printed even on failure


def test_phase_clock_counts_wall_and_cpu_seconds():
    clock = quickstart.PhaseClock()
    deadline = time.process_time() + 0.2
    while time.process_time() < deadline:  # busy: CPU time
        pass
    clock.lap("busy")
    time.sleep(0.2)  # idle: wall time only
    clock.lap("idle")
    (_, busy_wall, busy_cpu), (_, idle_wall, idle_cpu) = clock.phases
    assert busy_cpu >= 0.15 and busy_wall >= 0.15
    assert idle_wall >= 0.15 and idle_cpu < 0.1
    lines = clock.table().splitlines()
    assert [line.split()[0] for line in lines] == ["busy", "idle", "total"]


def test_summary_lists_each_content_task_against_its_chance():
    accuracy = AccuracyReport({"first_color": Tally(80, 80), "last_color": Tally(60, 80), "first_shape": Tally(54, 80),
                               "describe": Tally(30, 80)})  # fmt: skip
    report = GroundingReport({"real": 0.16, "shuffled": 1.4, "blank": 1.36}, accuracy,
                             {"first_color": 0.25, "last_color": 0.25, "first_shape": 1 / 3})  # fmt: skip
    clock = quickstart.PhaseClock()
    clock.lap("stage 1")
    text = quickstart.summary(report, clock, seed=3)
    lines = text.splitlines()
    assert lines[0] == "quickstart summary (seed 3):"
    assert lines[1].split(": ")[1] == "0.160 / 1.400 / 1.360"
    assert lines[2].split() == ["content", "accuracy", "80.8%", "(chance", "27.8%):"]
    assert lines[3].split() == ["first_color", "100.0%", "=", "4.0", "x", "chance", "25.0%"]
    assert lines[5].split() == ["first_shape", "67.5%", "=", "2.0", "x", "chance", "33.3%"]
    assert "describe" not in text  # not a content task
    assert lines[-1].split()[0] == "total"
    assert report.failures() == []
    assert pytest.approx(report.content_accuracy) == 194 / 240
