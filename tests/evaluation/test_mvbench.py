"""Tests of videoccam/evaluation/mvbench.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from videoccam.dataset.video_io import MediaLoadError
from videoccam.evaluation.backend import ScriptedBackend
from videoccam.evaluation.mvbench import MVBENCH_TASKS, MVBench, videochat2_frame_indices
from videoccam.evaluation.runner import evaluate
from videoccam.evaluation.samples import MediaRef
from videoccam.synthetic.benchmarks import make_mvbench


def test_task_table_matches_videochat2() -> None:
    assert len(MVBENCH_TASKS) == 20
    bounded = {k for k, v in MVBENCH_TASKS.items() if v.has_bound}
    assert bounded == {"Action Sequence", "Action Prediction", "Object Interaction", "Action Localization",
                       "Episodic Reasoning"}
    frames = {k for k, v in MVBENCH_TASKS.items() if v.data_type == "frame"}
    assert frames == {"Episodic Reasoning"}
    assert MVBENCH_TASKS["Episodic Reasoning"].prefix == "tvqa/frames_fps3_hq/"
    assert MVBENCH_TASKS["Fine-grained Pose"].json_file == "fine_grained_pose.json"


def test_videochat2_frame_indices_whole_video() -> None:
    # 100 frames (max_frame 99) at 25 fps, no bound, 8 segments: seg = 99 / 8 = 12.375, offsets
    # round(12.375 * i) = 0, 12, 25, 37, 50, 62, 74, 87, plus int(.. + 6.1875).
    assert videochat2_frame_indices(None, 25.0, 99, 8) == [6, 18, 31, 43, 56, 68, 80, 93]


def test_videochat2_frame_indices_bound_and_half_even_rounding() -> None:
    # Frame folder (first_idx 1), 21 files at 3 fps, bound (1.0 s, 6.0 s): start_idx = max(1, 3) = 3,
    # end_idx = min(18, 21) = 18, seg = 15 / 6 = 2.5; np.round(2.5 * i) = 0, 2, 5, 8, 10, 12 (half to even).
    assert videochat2_frame_indices((1.0, 6.0), 3.0, 21, 6, first_idx=1) == [4, 6, 9, 12, 14, 16]
    # Python round() on the bound: round(0.5 * 5) = round(2.5) = 2 (half to even).
    assert videochat2_frame_indices((0.5, 3.0), 5.0, 100, 1) == [8]  # start 2, end 15, seg 13 -> int(2 + 6.5)


def test_videochat2_frame_indices_short_window_repeats_and_errors() -> None:
    # 3 frames, 4 segments: seg = 0.5, np.round(0.5 i) = 0, 0 (half to even), 1, 2 -> int(+0.25)
    assert videochat2_frame_indices(None, 30.0, 2, 4) == [0, 0, 1, 2]
    with pytest.raises(ValueError, match="empty"):
        videochat2_frame_indices((10.0, 12.0), 3.0, 20, 4, first_idx=1)
    with pytest.raises(ValueError, match="num_segments"):
        videochat2_frame_indices(None, 3.0, 20, 0)


def test_load_media_video_with_bound(synthetic_root: Path) -> None:
    bench = MVBench(synthetic_root / "mvbench")
    path = synthetic_root / "mvbench" / "video" / "star/Charades_v1_480" / "vid0.mp4"  # 48 frames at 8 fps
    loaded = bench.load_media(MediaRef(str(path), "video", (1.0, 4.5)), 4)
    # start_idx = 8, end_idx = min(36, 47) = 36, seg = 7 -> int(8 + 3.5 + 7 i)
    assert loaded.indices == [11, 18, 25, 32]
    assert len(loaded.frames) == 4 and loaded.fps == pytest.approx(8.0)
    whole = bench.load_media(MediaRef(str(path), "video", None), 4)
    assert whole.indices == videochat2_frame_indices(None, 8.0, 47, 4)


def test_load_media_frame_folder(synthetic_root: Path) -> None:
    bench = MVBench(synthetic_root / "mvbench")
    folder = synthetic_root / "mvbench" / "video" / "tvqa/frames_fps3_hq" / "clip0"  # 24 frames, 3 fps
    loaded = bench.load_media(MediaRef(str(folder), "frame", (1.0, 6.0)), 6)
    assert loaded.indices == videochat2_frame_indices((1.0, 6.0), 3.0, 24, 6, first_idx=1)
    assert len(loaded.frames) == 6 and loaded.frames[0].size == (64, 64)
    with pytest.raises(MediaLoadError, match="empty"):
        bench.load_media(MediaRef(str(folder), "frame", (30.0, 40.0)), 4)
    with pytest.raises(MediaLoadError, match="not found"):
        bench.load_media(MediaRef(str(folder.parent / "nope.mp4"), "video", None), 4)


def test_samples_prompt_and_answer(synthetic_root: Path) -> None:
    bench = MVBench(synthetic_root / "mvbench")
    samples = bench.samples()
    assert len(samples) == 40 and {s.meta["task"] for s in samples} == set(MVBENCH_TASKS)
    rec = json.loads((synthetic_root / "mvbench/json/action_sequence.json").read_text())[0]
    s = samples[0]
    assert s.uid == "action_sequence/0" and s.media.bound == (rec["start"], rec["end"])
    assert s.answer == "ABCD"[rec["candidates"].index(rec["answer"])]
    prompt = bench.build_prompt(s, "default", None)
    options = "\n".join(f"({'ABCD'[i]}) {c}" for i, c in enumerate(rec["candidates"]))
    assert prompt == (f"<video>\nQuestion: {rec['question']}\nOptions:\n{options}\n"
                      "Answer with the option's letter from the given choices directly.")


def test_evaluator_writes_results(synthetic_root: Path, tmp_path: Path) -> None:
    bench = MVBench(synthetic_root / "mvbench", tasks=["Action Sequence", "Episodic Reasoning", "Action Antonym"])
    backend = ScriptedBackend(lambda p: "(A)")
    res = evaluate(bench, backend, [4], tmp_path, print_fn=None, progress=False)[4]["default"]
    saved = json.loads((tmp_path / "mvbench" / "results_f4.json").read_text())
    assert saved["headline"] == res["headline"] and set(saved["headline"]) == {"Avg"}
    m = saved["metrics"]
    assert set(m) == {"avg", "task_mean", "overall", "per_task", "unparseable", "missing", "missing_tasks"}
    assert list(m["per_task"]) == ["Action Sequence", "Action Antonym", "Episodic Reasoning"]
    assert m["overall"]["total"] == 6 and m["missing"] == [] and m["unparseable"] == []
    expected = sum(s.answer == "A" for s in bench.samples())
    assert m["overall"]["correct"] == expected


def test_missing_task_json_is_listed_or_an_error(tmp_path: Path) -> None:
    root = make_mvbench(tmp_path / "mv", questions_per_task=1, tasks=["Action Antonym"])
    bench = MVBench(root)
    assert len(bench.samples()) == 1 and "Action Sequence" in bench.missing_tasks
    with pytest.raises(FileNotFoundError, match="action_sequence.json"):
        MVBench(root, tasks=["Action Sequence"]).samples()
    with pytest.raises(ValueError, match="unknown MVBench task"):
        MVBench(root, tasks=["Nope"])


def test_malformed_record_names_file(tmp_path: Path) -> None:
    (tmp_path / "json").mkdir()
    (tmp_path / "json" / "action_antonym.json").write_text(json.dumps([{"video": "x.mp4", "question": "q"}]))
    with pytest.raises(ValueError, match=r"action_antonym.json record 0: malformed"):
        MVBench(tmp_path).samples()
    (tmp_path / "json" / "action_antonym.json").write_text(
        json.dumps([{"video": "x.mp4", "question": "q", "candidates": ["a", "b"], "answer": "c"}]))
    with pytest.raises(ValueError, match="answer 'c' is not one of the candidates"):
        MVBench(tmp_path).samples()
