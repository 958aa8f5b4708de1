"""Tests of videoccam/evaluation/mlvu.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from videoccam.evaluation.backend import ScriptedBackend
from videoccam.evaluation.mlvu import MLVU
from videoccam.evaluation.runner import evaluate
from videoccam.synthetic.benchmarks import MLVU_SYNTHETIC_SIZES


def _wrong(letter: str) -> str:
    return "B" if letter == "A" else "A"


def test_m_avg_differs_from_micro_average_on_uneven_split(synthetic_root: Path) -> None:
    bench = MLVU(synthetic_root / "mlvu")
    samples = bench.samples()
    # Right answers per task (synthetic sizes: plotQA 3, needle 2, ego 1, count 2, order 1, anomaly_reco 1,
    # topic_reasoning 2).
    right = {"plotQA": 3, "needle": 0, "ego": 1, "count": 1, "order": 0, "anomaly_reco": 0, "topic_reasoning": 2}
    replies, seen = {}, {}
    for s in samples:
        if s.generation:
            continue
        k = seen[s.meta["task"]] = seen.get(s.meta["task"], 0) + 1
        replies[s.uid] = f"({s.answer})" if k <= right[s.meta["task"]] else _wrong(s.answer)
    m = bench.compute_metrics(samples, replies)
    # Task accuracies 100, 0, 100, 50, 0, 0, 100 -> M-Avg 350 / 7 = 50; micro 7 / 12.
    assert m["m_avg"] == pytest.approx(50.0)
    assert m["micro_avg"] == pytest.approx(100 * 7 / 12)
    assert m["per_task"]["count"]["accuracy"] == pytest.approx(50.0)
    assert list(m["per_task"]) == ["plotQA", "needle", "ego", "count", "order", "anomaly_reco", "topic_reasoning"]
    assert m["generation"] == {"sub_scene": {"answered": 0, "total": 1}, "summary": {"answered": 0, "total": 1}}
    assert bench.headline(m) == {"M-Avg": pytest.approx(50.0), "micro": pytest.approx(100 * 7 / 12)}


def test_evaluator_writes_results_and_generation_files(synthetic_root: Path, tmp_path: Path) -> None:
    bench = MLVU(synthetic_root / "mlvu")
    backend = ScriptedBackend(lambda p: "Answer: A")
    evaluate(bench, backend, [4], tmp_path, print_fn=None, progress=False, gen_max_new_tokens=99)
    r = json.loads((tmp_path / "mlvu" / "results_f4.json").read_text())
    assert set(r["headline"]) == {"M-Avg", "micro"}
    assert set(r["metrics"]) == {"m_avg", "micro_avg", "overall", "per_task", "generation", "unparseable", "missing",
                                 "missing_tasks"}
    n_mc = sum(v for k, v in MLVU_SYNTHETIC_SIZES.items() if k not in ("sub_scene", "summary"))
    assert r["metrics"]["overall"]["total"] == n_mc
    gen = json.loads((tmp_path / "mlvu" / "generation_f4" / "sub_scene.json").read_text())
    assert gen == [{"video_name": "sub_scene_0.mp4", "Q": "Describe what happens in the video.",
                    "A": "A white square moves from left to right.", "pred": "Answer: A",
                    "scoring_points": ["a white square", "moves to the right"]}]
    assert r["files"]["generation_summary"].endswith("generation_f4/summary.json")
    # Generation prompts have no multiple-choice instruction and their own token budget.
    gen_calls = [c for c in backend.answer_calls if c[2] == 99]
    assert [p for c in gen_calls for p in c[0]] == ["<video>\nDescribe what happens in the video."] * 2


def test_video_folder_named_by_task_is_accepted(tmp_path: Path, synthetic_root: Path) -> None:
    root = tmp_path / "mlvu"
    (root / "json").mkdir(parents=True)
    shutil.copy(synthetic_root / "mlvu/json/3_ego.json", root / "json")
    shutil.copytree(synthetic_root / "mlvu/video/3_ego", root / "video/ego")
    bench = MLVU(root, tasks=["ego"])
    (s,) = bench.samples()
    assert s.media.path == str(root / "video/ego/ego_0.mp4")
    assert len(bench.load_media(s.media, 4).frames) == 4


def test_unknown_task(synthetic_root: Path) -> None:
    with pytest.raises(ValueError, match="unknown MLVU task"):
        MLVU(synthetic_root / "mlvu", tasks=["plot"])
