"""Tests of videoccam/evaluation/videomme.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from videoccam.evaluation.backend import ScriptedBackend
from videoccam.evaluation.runner import evaluate
from videoccam.evaluation.samples import LoadedMedia
from videoccam.evaluation.videomme import (
    SUBTITLE_HEADER,
    VIDEOMME_INSTRUCTION,
    SubtitleEvent,
    VideoMME,
    parse_srt,
    select_subtitles,
)

SRT = (
    "\ufeff1\r\n"
    "00:00:00,500 --> 00:00:02,000\r\n"
    "Hello <i>there</i>.\r\n"
    "\r\n"
    "2\r\n"
    "00:00:02,000 --> 00:00:03,250\r\n"
    "Second line,\r\n"
    "continued.\r\n"
    "\r\n"
    "3\r\n"
    "00:00:05.000 --> 00:00:06,000\r\n"
    "{\\an8}Third.\r\n"
    "\r\n"
    "4\r\n"
    "00:01:00,000 --> 00:01:01,000\r\n"
    "\r\n"
)


def test_parse_srt_literal() -> None:
    assert parse_srt(SRT) == [
        SubtitleEvent(0.5, 2.0, "Hello there."),
        SubtitleEvent(2.0, 3.25, "Second line, continued."),
        SubtitleEvent(5.0, 6.0, "Third."),
    ]  # the empty 4th event is dropped


def test_select_subtitles_for_frame_times() -> None:
    events = parse_srt(SRT)
    # t=0.1: none; 0.5: first (start inclusive); 1.9: first again (deduplicated); 2.0: second (end exclusive);
    # 4.0: none; 5.5: third.
    assert select_subtitles(events, [0.1, 0.5, 1.9, 2.0, 4.0, 5.5]) == [
        "Hello there.", "Second line, continued.", "Third."]
    assert select_subtitles(events, [3.25, 4.99]) == []
    assert select_subtitles(events, [6.0 - 1e-9]) == ["Third."]
    # Overlapping events: both cover t, in start order.
    overlap = [SubtitleEvent(0.0, 5.0, "long"), SubtitleEvent(1.0, 2.0, "short")]
    assert select_subtitles(overlap, [1.5]) == ["long", "short"]


def test_samples_and_prompts(synthetic_root: Path) -> None:
    bench = VideoMME(synthetic_root / "videomme")
    samples = bench.samples()
    assert len(samples) == 12
    s = samples[0]
    assert s.uid == "001-1" and s.meta["duration"] == "short" and s.answer in "ABCD" and s.num_options == 4
    assert s.media.path.endswith("video/synShortA01.mp4")
    # Subtitle events of synShortA01: [0.5k + 0.1, 0.5k + 0.5) for k = 0..7.
    # t = 0.25 (line 0), 0.375 (line 0 again), 0.5 (none: line 0 ends there), 2.25 (line 4)
    media = LoadedMedia(frames=[], indices=[2, 3, 4, 18], fps=8.0)
    prompt = bench.build_prompt(s, "w_sub", media)
    assert prompt.startswith(f"<video>\n{SUBTITLE_HEADER}\nsynShortA01 line 0: the red one moves.\n"
                             f"synShortA01 line 4: the purple one moves.\n{VIDEOMME_INSTRUCTION}\n")
    assert prompt.endswith("\nD. " + prompt.split("\nD. ")[1].split("\n")[0] +
                           "\nAnswer with the option's letter from the given choices directly.")
    no_sub = bench.build_prompt(s, "wo_sub", media)
    assert no_sub == f"<video>\n{VIDEOMME_INSTRUCTION}\n{s.question}\n" \
                     "Answer with the option's letter from the given choices directly."
    # A video without an .srt keeps the header with no lines (as upstream).
    long_q = [x for x in samples if x.meta["duration"] == "long"][0]
    assert bench.build_prompt(long_q, "w_sub", media).startswith(
        f"<video>\n{SUBTITLE_HEADER}\n\n{VIDEOMME_INSTRUCTION}\n")


def test_per_duration_accuracy_hand_computed(synthetic_root: Path) -> None:
    bench = VideoMME(synthetic_root / "videomme")
    samples = bench.samples()

    def wrong(letter: str) -> str:
        return "B" if letter == "A" else "A"

    replies = {}
    short = [s for s in samples if s.meta["duration"] == "short"]  # 6 questions
    medium = [s for s in samples if s.meta["duration"] == "medium"]  # 3
    long_ = [s for s in samples if s.meta["duration"] == "long"]  # 3
    for i, s in enumerate(short):  # 4 right, 1 wrong, 1 unparseable
        replies[s.uid] = f"({s.answer})" if i < 4 else (wrong(s.answer) if i == 4 else "no idea")
    for i, s in enumerate(medium):  # 1 right
        replies[s.uid] = f"The answer is {s.answer}" if i == 0 else wrong(s.answer)
    for s in long_:  # 3 right
        replies[s.uid] = f"{s.answer}."
    m = bench.compute_metrics(samples, replies)
    assert m["per_duration"]["short"]["accuracy"] == pytest.approx(400 / 6)
    assert m["per_duration"]["medium"]["accuracy"] == pytest.approx(100 / 3)
    assert m["per_duration"]["long"]["accuracy"] == pytest.approx(100.0)
    assert m["overall"] == {"accuracy": pytest.approx(800 / 12), "correct": 8, "total": 12, "unparseable": 1}
    assert [u["uid"] for u in m["unparseable"]] == [short[5].uid]
    assert bench.headline(m) == {"overall": pytest.approx(800 / 12), "short": pytest.approx(400 / 6),
                                 "medium": pytest.approx(100 / 3), "long": 100.0}
    assert sum(v["total"] for v in m["per_task_type"].values()) == 12


def test_evaluator_both_variants(synthetic_root: Path, tmp_path: Path) -> None:
    bench = VideoMME(synthetic_root / "videomme")
    backend = ScriptedBackend(lambda p: "C")
    evaluate(bench, backend, [4], tmp_path, print_fn=None, progress=False)
    for variant in ("wo_sub", "w_sub"):
        r = json.loads((tmp_path / "videomme" / f"results_f4_{variant}.json").read_text())
        assert r["variant"] == variant and set(r["headline"]) == {"overall", "short", "medium", "long"}
        assert set(r["metrics"]) == {"overall", "per_duration", "per_task_type", "per_domain", "per_sub_category",
                                     "unparseable", "missing"}
        assert r["metrics"]["overall"]["total"] == 12
    # One encode per video for both variants; 24 answers.
    assert len(backend.encode_calls) == 4 and sum(len(c[0]) for c in backend.answer_calls) == 24
    prompts = [p for c in backend.answer_calls for p in c[0]]
    assert sum(SUBTITLE_HEADER in p for p in prompts) == 12


def test_tasks_rejected(synthetic_root: Path) -> None:
    with pytest.raises(ValueError, match="no tasks"):
        VideoMME(synthetic_root / "videomme", tasks=["x"])


def test_missing_parquet(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no Video-MME parquet"):
        VideoMME(tmp_path).samples()
