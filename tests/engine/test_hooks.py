"""SkippedSamplesHook and on_error in real (tiny) trainings through tools/train.py on the broken corpus."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from tests.conftest import ROOT, load_tool, tiny_cfg_options
from tests.dataset import corpus
from videoccam.engine.hooks import SkippedSamplesHook

CUSTOM = str(ROOT / "configs/tiny/videoccam_tiny_qwen2_custom_finetune.py")


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    corpus.build_corpus(root)
    return root


def _options(tiny_models, corpus_dir, *extra: str) -> list[str]:
    return [*tiny_cfg_options(tiny_models, corpus_dir, "corpus.jsonl"), "model.pretrained_pth=None",
            "train_cfg.max_epochs=1", "default_hooks.logger.interval=1", *extra]  # fmt: skip


def test_on_error_raise_stops_at_the_first_bad_record(tiny_models, corpus_dir, tmp_path):
    env = dict(os.environ, PATH=str(ROOT / ".venv/bin") + os.pathsep + os.environ["PATH"])
    run = subprocess.run(
        [sys.executable, str(ROOT / "tools/train.py"), CUSTOM, "--work-dir", str(tmp_path / "raise"),
         "--cfg-options", *_options(tiny_models, corpus_dir)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert run.returncode != 0
    expected = (f"{corpus_dir / 'corpus.jsonl'} line 4 (record 3, 0-based; id='zero_bytes'): video file is empty "
                "(0 bytes)")
    assert expected in run.stderr, run.stderr[-3000:]
    assert "RecordError" in run.stderr
    assert not (tmp_path / "raise" / "last_checkpoint").exists()


def test_on_error_skip_completes_and_lists_exactly_the_bad_records(tiny_models, corpus_dir, tmp_path):
    work_dir = tmp_path / "skip"
    options = _options(tiny_models, corpus_dir, "train_dataloader.dataset.on_error=skip",
                       "train_dataloader.num_workers=2", "train_dataloader.batch_size=2")  # fmt: skip
    assert load_tool("train").main([CUSTOM, "--work-dir", str(work_dir), "--cfg-options", *options]) == 0
    assert (work_dir / "last_checkpoint").exists()
    summary = json.loads((work_dir / "skipped_samples.json").read_text())
    entries = {entry["index"]: entry for entry in summary["skipped"]}
    assert summary["num_skipped"] == len(entries) == len(corpus.BAD)
    assert sorted(entries) == sorted(corpus.BAD)  # exactly the bad records, none of the good ones
    for index, entry in entries.items():
        category, words = corpus.BAD[index]
        assert entry["category"] == category and words in entry["reason"], entry
        assert entry["stage"] == ("build" if index in corpus.BUILD_TIME else "load")
        assert entry["source"] == str(corpus_dir / "corpus.jsonl")
    assert entries[4]["id"] == "truncated" and entries[6]["id"] == "text_as_mp4"


def test_hook_collects_wrapped_datasets_and_batches(tmp_path):
    inner = SimpleNamespace(skipped=[{"source": "a.jsonl", "index": 1, "reason": "x", "category": "schema"}])
    other = SimpleNamespace(skipped=[{"source": "b.jsonl", "index": 1, "reason": "y", "category": "too_long"}])
    concat = SimpleNamespace(datasets=[inner, SimpleNamespace(dataset=other)])
    runner = SimpleNamespace(train_dataloader=SimpleNamespace(dataset=concat), work_dir=str(tmp_path))
    hook = SkippedSamplesHook()
    hook.before_train(runner)
    marker = {"source": "a.jsonl", "index": 5, "reason": "z", "category": "media_corrupt"}
    for _ in range(2):  # the same record skipped in two epochs is listed once
        hook.after_train_iter(runner, 0, {"data": {"skipped": [marker]}})
    hook.after_train_iter(runner, 1, {"data": {}})
    hook.after_train(runner)
    summary = json.loads((tmp_path / "skipped_samples.json").read_text())
    assert [(e["source"], e["index"], e["stage"]) for e in summary["skipped"]] == [
        ("a.jsonl", 1, "build"), ("a.jsonl", 5, "load"), ("b.jsonl", 1, "build")]
