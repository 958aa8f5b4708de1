"""Tests of videoccam/evaluation/runner.py: feature reuse in sweeps, batching, resuming, run identity."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from videoccam.evaluation.backend import ScriptedBackend, hash_batch_reply, hash_reply
from videoccam.evaluation.mlvu import MLVU
from videoccam.evaluation.mvbench import MVBench
from videoccam.evaluation.runner import evaluate
from videoccam.evaluation.samples import LoadedMedia, MediaRef
from videoccam.evaluation.videomme import VideoMME
from videoccam.evaluation.videovista import VideoVista


class SpyMVBench(MVBench):
    """MVBench that counts how often each (media, num_frames) is decoded."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.loads: Counter = Counter()

    def load_media(self, media: MediaRef, num_frames: int) -> LoadedMedia:
        self.loads[(media, num_frames)] += 1
        return super().load_media(media, num_frames)


def test_sweep_encodes_each_video_once_per_frame_count(synthetic_root: Path, tmp_path: Path) -> None:
    bench = SpyMVBench(synthetic_root / "mvbench")
    backend = ScriptedBackend(hash_reply)
    evaluate(bench, backend, [2, 4, 6], tmp_path, batch_size=3, print_fn=None, progress=False)
    samples = bench.samples()
    media = {s.media for s in samples}
    assert len(media) < len(samples)  # videos are shared, so reuse is exercised
    assert set(bench.loads.values()) == {1} and len(bench.loads) == 3 * len(media)
    assert len(backend.encode_calls) == 3 * len(media)
    assert Counter(m.num_frames for m in backend.encode_calls) == {2: len(media), 4: len(media), 6: len(media)}
    # Every question of every frame count was answered exactly once, in batches of at most 3 (mixing videos).
    assert sum(len(c[0]) for c in backend.answer_calls) == 3 * len(samples)
    assert max(len(c[0]) for c in backend.answer_calls) == 3
    assert any(len({m.call_index for m in c[1]}) > 1 for c in backend.answer_calls)


class SpyVideoMME(VideoMME):
    """Video-MME that records the media of each decode, in order."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.loaded: list[MediaRef] = []

    def load_media(self, media: MediaRef, num_frames: int) -> LoadedMedia:
        self.loaded.append(media)
        return super().load_media(media, num_frames)


class MediaEchoBackend(ScriptedBackend):
    """Replies with the index of the encode call whose features came with the prompt."""

    def answer(self, prompts, media, max_new_tokens=16):
        super().answer(prompts, media, max_new_tokens)
        return [str(m.call_index) for m in media]


def test_features_go_with_their_video(synthetic_root: Path, tmp_path: Path) -> None:
    bench = SpyVideoMME(synthetic_root / "videomme")
    backend = MediaEchoBackend(lambda p: "")
    evaluate(bench, backend, [4], tmp_path, batch_size=5, print_fn=None, progress=False)
    # Each decode is followed by exactly one encode, so encode call i holds the features of bench.loaded[i].
    assert len(bench.loaded) == len(backend.encode_calls) == 4
    records = [json.loads(x) for x in (tmp_path / "videomme" / "predictions_f4.jsonl").read_text().splitlines()]
    assert len(records) == 24
    media_of = {s.uid: s.media for s in bench.samples()}
    for rec in records:
        assert bench.loaded[int(rec["reply"])] == media_of[rec["uid"]]


def test_resume_skips_answered_questions(synthetic_root: Path, tmp_path: Path) -> None:
    bench = VideoMME(synthetic_root / "videomme")
    first = ScriptedBackend(hash_reply)
    r1 = evaluate(bench, first, [4], tmp_path, limit=6, print_fn=None, progress=False)
    assert sum(len(c[0]) for c in first.answer_calls) == 12
    again = ScriptedBackend(hash_reply)
    r2 = evaluate(bench, again, [4], tmp_path, limit=6, print_fn=None, progress=False)
    assert again.answer_calls == [] and again.encode_calls == []
    assert r1 == r2
    more = ScriptedBackend(hash_reply)  # a larger limit answers only the new questions
    r3 = evaluate(bench, more, [4], tmp_path, print_fn=None, progress=False)
    assert sum(len(c[0]) for c in more.answer_calls) == 12 and len(more.encode_calls) == 2
    assert r3[4]["w_sub"]["metrics"]["overall"]["total"] == 12


def test_run_info_mismatch_and_overwrite(synthetic_root: Path, tmp_path: Path) -> None:
    bench = VideoMME(synthetic_root / "videomme")
    kw = dict(limit=3, print_fn=None, progress=False, variants=["wo_sub"])
    evaluate(bench, ScriptedBackend(lambda p: "A"), [4], tmp_path, run_info={"model": "m1"}, **kw)
    with pytest.raises(ValueError, match="model: was 'm1', now 'm2'"):
        evaluate(bench, ScriptedBackend(lambda p: "A"), [4], tmp_path, run_info={"model": "m2"}, **kw)
    b = ScriptedBackend(lambda p: "B")
    r = evaluate(bench, b, [4], tmp_path, run_info={"model": "m2"}, overwrite=True, **kw)
    assert sum(len(c[0]) for c in b.answer_calls) == 3
    assert json.loads((tmp_path / "videomme" / "run_info.json").read_text()) == {"model": "m2"}
    assert r[4]["wo_sub"]["num_questions"] == 3


def test_bad_arguments(synthetic_root: Path, tmp_path: Path) -> None:
    bench = VideoMME(synthetic_root / "videomme")
    backend = ScriptedBackend(lambda p: "A")
    with pytest.raises(ValueError, match="batch size"):
        evaluate(bench, backend, [4], tmp_path, batch_size=0, print_fn=None)
    with pytest.raises(ValueError, match="frame counts"):
        evaluate(bench, backend, [0], tmp_path, print_fn=None)
    with pytest.raises(ValueError, match="variants"):
        evaluate(bench, backend, [4], tmp_path, variants=["subs"], print_fn=None)
    with pytest.raises(ValueError, match="--limit must be positive"):
        evaluate(bench, backend, [4], tmp_path, limit=0, print_fn=None)


def test_limit_applies_per_task(synthetic_root: Path) -> None:
    bench = MVBench(synthetic_root / "mvbench")
    picked = bench.select(1)
    assert len(picked) == 20 and len({s.meta["task"] for s in picked}) == 20


def test_printed_table(synthetic_root: Path, tmp_path: Path) -> None:
    lines: list[str] = []
    bench = VideoMME(synthetic_root / "videomme")
    evaluate(bench, ScriptedBackend(lambda p: "A"), [2, 4], tmp_path, print_fn=lines.append, progress=False)
    text = "\n".join(lines)
    assert text.startswith("== videomme ==")
    assert "frames  variant  overall  short  medium" in text and "Counting Problem" in text


class CrashingBackend(ScriptedBackend):
    """Batch-dependent replies (as a real model's may be, through padding); raises once ``crash_after`` answers
    are made."""

    def __init__(self, crash_after: int | None = None) -> None:
        super().__init__(hash_batch_reply, batch_aware=True)
        self.crash_after = crash_after

    def answer(self, prompts, media, max_new_tokens=16):
        if self.crash_after is not None and self.num_answered >= self.crash_after:
            raise RuntimeError("crash")
        return super().answer(prompts, media, max_new_tokens)


def _calls(backend: ScriptedBackend) -> list[tuple[list[str], int]]:
    return [(prompts, budget) for prompts, _, budget in backend.answer_calls]


def test_a_crashed_run_resumes_with_the_same_batches(synthetic_root: Path, tmp_path: Path) -> None:
    """MLVU (two generation budgets), batches of 3 mixing videos: a run that crashed and was resumed asks the
    model exactly the batches of an uninterrupted run, and saves the same predictions in benchmark order."""
    bench = MLVU(synthetic_root / "mlvu")
    kw = dict(batch_size=3, print_fn=None, progress=False, gen_max_new_tokens=32)
    full = CrashingBackend()
    r_full = evaluate(bench, full, [4], tmp_path / "full", **kw)
    assert any(len({m.call_index for m in media}) > 1 for _, media, _ in full.answer_calls)  # batches mix videos
    crashed = CrashingBackend(crash_after=7)
    with pytest.raises(RuntimeError, match="crash"):
        evaluate(bench, crashed, [4], tmp_path / "resumed", **kw)
    resumed = CrashingBackend()
    r_resumed = evaluate(bench, resumed, [4], tmp_path / "resumed", **kw)
    assert _calls(crashed) + _calls(resumed) == _calls(full)
    assert len(_calls(crashed)) >= 3 and _calls(resumed)
    assert r_resumed[4]["default"]["metrics"] == r_full[4]["default"]["metrics"]
    files = [(tmp_path / d / "mlvu" / "predictions_f4.jsonl").read_text() for d in ("full", "resumed")]
    assert files[0] == files[1]
    assert [json.loads(x)["uid"] for x in files[0].splitlines()] == [s.uid for s in bench.samples()]


def test_a_shard_of_another_model_or_frame_count_is_refused(synthetic_root: Path, tmp_path: Path) -> None:
    bench = VideoMME(synthetic_root / "videomme")
    kw = dict(limit=3, print_fn=None, progress=False, variants=["wo_sub"])
    evaluate(bench, ScriptedBackend(hash_reply), [2, 4], tmp_path, run_info={"model": "m1"}, **kw)
    bench_dir = tmp_path / "videomme"
    merged = (bench_dir / "predictions_f4.jsonl").read_text().splitlines()
    foreign = {**json.loads(merged[0]), "run": {"model": "m2"}}
    (bench_dir / "predictions_f4.rank1.jsonl").write_text(json.dumps(foreign) + "\n")
    with pytest.raises(ValueError, match=r"predictions_f4.rank1.jsonl:1: a prediction of another run \(model: 'm2' "
                                         r"there, 'm1' in this run\)"):  # fmt: skip
        evaluate(bench, ScriptedBackend(hash_reply), [2, 4], tmp_path, run_info={"model": "m1"}, **kw)
    shutil.copy(bench_dir / "predictions_f2.jsonl", bench_dir / "predictions_f4.rank1.jsonl")
    with pytest.raises(ValueError, match="predictions_f4.rank1.jsonl:1: record for 2 frames in the store of 4 frames"):
        evaluate(bench, ScriptedBackend(hash_reply), [2, 4], tmp_path, run_info={"model": "m1"}, **kw)
    (bench_dir / "predictions_f4.rank1.jsonl").unlink()
    again = ScriptedBackend(hash_reply)
    evaluate(bench, again, [2, 4], tmp_path, run_info={"model": "m1"}, **kw)
    assert again.answer_calls == [] and (bench_dir / "predictions_f4.jsonl").read_text().splitlines() == merged


def test_leftover_shards_are_merged(synthetic_root: Path, tmp_path: Path) -> None:
    """Shards of an earlier multi-process run (any rank numbers) count as answered, and are merged and removed."""
    bench = VideoVista(synthetic_root / "videovista")
    kw = dict(print_fn=None, progress=False, run_info={"model": "m"})
    clean = evaluate(bench, ScriptedBackend(hash_reply), [4], tmp_path / "clean", **kw)
    lines = (tmp_path / "clean/videovista/predictions_f4.jsonl").read_text().splitlines()
    bench_dir = tmp_path / "shards" / "videovista"
    bench_dir.mkdir(parents=True)
    (bench_dir / "predictions_f4.rank0.jsonl").write_text("\n".join(lines[1::3]) + "\n")
    (bench_dir / "predictions_f4.rank7.jsonl").write_text("\n".join(lines[2::3]) + "\n" + lines[5][:20])  # torn tail
    backend = ScriptedBackend(hash_reply)
    merged = evaluate(bench, backend, [4], tmp_path / "shards", **kw)
    assert sum(len(p) for p, _, _ in backend.answer_calls) == len(lines[0::3])  # only what no shard holds
    assert merged == {4: {"default": {**clean[4]["default"], "files": merged[4]["default"]["files"]}}}
    assert (bench_dir / "predictions_f4.jsonl").read_text().splitlines() == lines
    assert sorted(p.name for p in bench_dir.glob("predictions_*")) == ["predictions_f4.jsonl"]


def test_a_rank_that_reads_other_questions_or_another_folder_is_stopped(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from videoccam.evaluation.runner import LAUNCH_FILE, _check_rank

    bench = SimpleNamespace(root=Path("/data/mvbench"))
    rank1 = SimpleNamespace(rank=1, world_size=2)
    (tmp_path / LAUNCH_FILE).write_text("token-of-this-launch")
    plan = {"digest": "d", "token": "token-of-this-launch"}
    _check_rank(plan, "d", tmp_path, bench, rank1)  # same questions, shared folder
    with pytest.raises(ValueError, match="rank 1 reads other questions from /data/mvbench than rank 0"):
        _check_rank(plan, "other", tmp_path, bench, rank1)
    (tmp_path / LAUNCH_FILE).unlink()  # a node whose --out is its own local folder
    with pytest.raises(ValueError, match="does not see the file .*.launch that rank 0 just wrote: --out must be a "
                                         "folder that every node shares"):  # fmt: skip
        _check_rank(plan, "d", tmp_path, bench, rank1)
