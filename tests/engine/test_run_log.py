"""videoccam/engine/run_log.py: a work dir's newest log and the last error in it; one-line error summaries.

RunWatcher (log, failure lines, first and last loss of a run) is checked on real runs in tests/tools/test_train.py.
"""

from __future__ import annotations

import pytest

from videoccam.checkpoint import UnsafeCheckpointError
from videoccam.engine.run_log import ERROR_TAIL_BYTES, error_summary, last_error_line, newest_log


def _log(work_dir, stamp: str, text: str = "", name: str | None = None):
    path = work_dir / stamp / f"{name or stamp}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_newest_log_is_the_latest_runs_rank_0_file(tmp_path):
    assert newest_log(tmp_path) is None
    _log(tmp_path, "20261207_090000")
    newest = _log(tmp_path, "20261207_183000")
    _log(tmp_path, "20261207_183000", name="20261207_183000_host_device1_rank1")  # every rank logs (distributed)
    _log(tmp_path, "vis_data", name="other")  # not mmengine's <timestamp>/<timestamp>.log
    assert newest_log(tmp_path) == newest


@pytest.mark.parametrize("lines, expected", [
    (["Iter(train) [1/4] loss: 6.5", "Traceback (most recent call last):", '  File "x.py", line 1',
      "FileNotFoundError: data file not found: /d.json"], "FileNotFoundError: data file not found: /d.json"),
    (["2026/12/07 18:39:07 - mmengine - ERROR - x.py - f - 3 - CUDA out of memory"],
     "x.py - f - 3 - CUDA out of memory"),
    (["videoccam.dataset.records.RecordError: a.jsonl: record 3 (id='c'): video not found: v.mp4", "KeyboardInterrupt"],
     "KeyboardInterrupt"),
    (["Iter(train) [4/4] loss: 6.5", "lr_error: 0.1", "Saving checkpoint at 4 iterations"], None),
])  # fmt: skip
def test_last_error_line(tmp_path, lines, expected):
    assert last_error_line(_log(tmp_path, "20261207_183000", "\n".join(lines) + "\n")) == expected


def test_last_error_line_reads_only_the_end_of_a_long_log(tmp_path):
    early = "ValueError: an error long ago\n"
    filler = "Iter(train) loss: 1.0\n" * (ERROR_TAIL_BYTES // 20)
    log = _log(tmp_path, "20261207_183000", early + filler)
    assert last_error_line(log) is None
    log.write_text(early + filler + "RuntimeError: the end\n" + "Iter(train) loss: 1.0\n" * 3)
    assert last_error_line(log) == "RuntimeError: the end"


def test_error_summary_names_foreign_errors_by_type_and_ours_by_message():
    assert error_summary(KeyError("lr")) == "KeyError: 'lr'"
    assert error_summary(FileNotFoundError("data file not found: /d.json")) == \
        "FileNotFoundError: data file not found: /d.json"  # fmt: skip
    assert error_summary(UnsafeCheckpointError("refusing to load checkpoint 'x'")) == "refusing to load checkpoint 'x'"
    assert error_summary(RuntimeError()) == "RuntimeError"
