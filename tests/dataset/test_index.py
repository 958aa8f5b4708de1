"""videoccam/dataset/index.py: record spans, the index's content and key, atomic builds, one builder at a time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from transformers import AutoTokenizer
from xtuner.utils import PROMPT_TEMPLATE

from tests.conftest import ROOT
from videoccam.dataset import index as index_module
from videoccam.dataset.index import IndexSettings, TokenIndex, ensure_indexes, index_job, scan_records
from videoccam.dataset.records import parse_record
from videoccam.dataset.tokenize import labels_from_spans, tokenize_sample

NUM_QUERIES, MAX_LENGTH = 8, 128


def _record(i: int, kind: str = "text", words: int = 6) -> dict:
    question = " ".join(["which shape appears first"] * (1 + i % 3))
    answer = " ".join(["the red square"] * words)
    record = {"id": f"r{i}", "conversations": [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]}
    if kind != "text":
        record[kind] = "m.mp4" if kind == "video" else "m.jpg"
        record["conversations"][0]["value"] = f"<{kind}>\n" + question
    return record


def _write(path: Path, records: list, blank_lines: bool = False) -> Path:
    lines = [json.dumps(r) for r in records]
    path.write_text("\n\n".join(lines) + "\n" if blank_lines else "\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def tokenizer(tiny_models):
    return AutoTokenizer.from_pretrained(str(tiny_models / "qwen2"))


def _settings(tokenizer, **kwargs) -> IndexSettings:
    options = dict(tokenizer=tokenizer, template=dict(PROMPT_TEMPLATE.qwen_chat), num_queries=NUM_QUERIES,
                   max_length=MAX_LENGTH, frames={"num_frames": 4})  # fmt: skip
    options.update(kwargs)
    return IndexSettings(**options)


def _media(root: Path) -> None:
    (root / "m.mp4").write_bytes(b"not decoded here")
    (root / "m.jpg").write_bytes(b"not decoded here")


def _open(path: Path, settings: IndexSettings, index_dir: Path, workers: int = 1) -> TokenIndex:
    job = index_job(str(path), path.parent, settings, index_dir)
    (index,) = ensure_indexes([job], settings, workers, progress=False)
    return index


def _content(index: TokenIndex) -> list:
    return [{k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in index.row(i).items()}
            for i in range(len(index))]  # fmt: skip


# ------------------------------------------------------------------------------------------------------------
# Scanning
# ------------------------------------------------------------------------------------------------------------
def test_scan_finds_every_record_of_json_lines_and_json_lists(tmp_path):
    records = [{"id": i, "text": "é" * i} for i in range(5)]
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_bytes(b"\n".join([b"", json.dumps(records[0]).encode(), b"   \t", json.dumps(records[1]).encode() + b"\r",
                                  b"", *(json.dumps(r).encode() for r in records[2:])]))  # no final newline
    spans = scan_records(jsonl)
    data = jsonl.read_bytes()
    assert [json.loads(data[a:b]) for a, b in zip(spans.starts, spans.ends)] == records
    assert spans.linenos.tolist() == [2, 4, 6, 7, 8]  # 1-based, blank and whitespace-only lines skipped
    assert len(scan_records(jsonl, max_records=2)) == 2

    as_list = tmp_path / "b.json"
    as_list.write_text(json.dumps(records, indent=2, ensure_ascii=False))  # pretty-printed, non-ASCII: bytes != chars
    spans = scan_records(as_list)
    data = as_list.read_bytes()
    assert [json.loads(data[a:b]) for a, b in zip(spans.starts, spans.ends)] == records
    (tmp_path / "empty.json").write_text("[ ]")
    assert len(scan_records(tmp_path / "empty.json")) == 0


def test_scan_of_a_blocked_file_equals_one_read(tmp_path, monkeypatch):
    path = _write(tmp_path / "many.jsonl", [_record(i) for i in range(300)], blank_lines=True)
    whole = scan_records(path)
    monkeypatch.setattr(index_module, "_SCAN_BLOCK", 97)  # lines cross block boundaries
    blocked = scan_records(path)
    for name in ("starts", "ends", "linenos"):
        assert getattr(blocked, name).tolist() == getattr(whole, name).tolist()


@pytest.mark.parametrize("text, message", [
    ('{"a": 1}', r"bad.json: expected a JSON list of records, got dict"),
    ('[{"a": 1},\n {"a": }]', r"bad.json: not valid JSON at line 2 column"),
    ('[{"a": 1}] x', r"bad.json: not valid JSON at line 1"),
])  # fmt: skip
def test_scan_of_a_broken_json_list_names_file_and_line(tmp_path, text, message):
    (tmp_path / "bad.json").write_text(text)
    with pytest.raises(ValueError, match=message):
        scan_records(tmp_path / "bad.json")


# ------------------------------------------------------------------------------------------------------------
# Content
# ------------------------------------------------------------------------------------------------------------
def test_index_holds_the_tokenised_records_and_the_bad_ones(tmp_path, tokenizer):
    _media(tmp_path)
    records = [_record(0), _record(1, "video"), {"id": "bad", "video": "m.mp4", "conversations": []},
               _record(3, "image", words=200), _record(4, "video")]  # fmt: skip
    records[4]["video"] = "missing.mp4"
    path = _write(tmp_path / "d.jsonl", records)
    settings = _settings(tokenizer)
    index = _open(path, settings, tmp_path / "idx")
    assert len(index) == 3 and index.meta["num_records"] == 5 and index.meta["num_truncated"] == 1
    assert [(e["index"], e["category"], e["source"]) for e in index.errors()] == [
        (2, "schema", str(path)), (4, "media_missing", str(path))]
    for row, position in enumerate([0, 1, 3]):
        values = index.row(row)
        expected = tokenize_sample(parse_record(records[position], position, str(path), tmp_path), tokenizer,
                                   settings.template, MAX_LENGTH, NUM_QUERIES, str(path))  # fmt: skip
        ids = values["input_ids"].tolist()
        assert ids == expected["input_ids"]
        assert labels_from_spans(ids, values["label_spans"].reshape(-1, 2)) == expected["labels"]
        assert values["record_index"] == position and values["id"] == f"r{position}"
        data = path.read_bytes()[values["byte_offset"] : values["byte_offset"] + values["byte_length"]]
        assert json.loads(data) == records[position]
    assert index.row(1)["media_kind"] == ["video"] and index.row(1)["media_path"] == [str(tmp_path / "m.mp4")]
    assert index.column("length").tolist()[1] == len(index.row(1)["input_ids"]) - 1 + NUM_QUERIES
    assert index.column("truncated").tolist() == [False, False, True]


def test_pool_of_builders_gives_the_same_index(tmp_path, tokenizer, monkeypatch):
    _media(tmp_path)
    records = [_record(i, ("text", "video", "image")[i % 3]) for i in range(60)]
    records[17] = {"id": "bad", "conversations": [{"from": "gpt", "value": "x"}]}
    path = _write(tmp_path / "d.jsonl", records)
    monkeypatch.setattr(index_module, "POOL_MIN_RECORDS", 0)
    monkeypatch.setattr(index_module, "UNIT_RECORDS", 7)
    one = _open(path, _settings(tokenizer), tmp_path / "one", workers=1)
    two = _open(path, _settings(tokenizer), tmp_path / "two", workers=2)
    assert one.path.name == two.path.name  # the key does not depend on the builders
    assert _content(one) == _content(two) and one.errors() == two.errors() and len(one) == 59


# ------------------------------------------------------------------------------------------------------------
# The key
# ------------------------------------------------------------------------------------------------------------
def test_any_change_of_the_key_builds_a_new_index(tmp_path, tokenizer, tiny_models, monkeypatch):
    _media(tmp_path)
    path = _write(tmp_path / "d.jsonl", [_record(i) for i in range(5)])
    index_dir = tmp_path / "idx"
    base = _open(path, _settings(tokenizer), index_dir)
    built = base.meta["built_by"]
    again = _open(path, _settings(tokenizer), index_dir)
    assert again.path == base.path and again.meta["built_by"] == built  # reused, not rebuilt

    other_tokenizer = AutoTokenizer.from_pretrained(str(tiny_models / "qwen2"))
    other_tokenizer.add_tokens(["<new>"])
    changed = {
        "max_length": _settings(tokenizer, max_length=MAX_LENGTH + 1),
        "num_queries": _settings(tokenizer, num_queries=NUM_QUERIES + 1),
        "template": _settings(tokenizer, template=dict(PROMPT_TEMPLATE.phi3_chat)),
        "tokenizer": _settings(other_tokenizer),
        "frames": _settings(tokenizer, frames={"num_frames": 8}),
        "check_files": _settings(tokenizer, check_files=False),
    }
    paths = {base.path}
    for name, settings in changed.items():
        paths.add(_open(path, settings, index_dir).path)
        assert len(paths) == 2 + list(changed).index(name), name

    # the data file: same size and mtime, other bytes (only the hash sees it)
    stat = path.stat()
    text = path.read_text()
    path.write_text(text.replace("r0", "q0"))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    rebuilt = _open(path, _settings(tokenizer), index_dir)
    assert rebuilt.path not in paths and rebuilt.row(0)["id"] == "q0"
    # and the code that writes the index
    original = index_module.code_version()
    monkeypatch.setattr(index_module, "code_version", lambda: original + "x")
    assert _open(path, _settings(tokenizer), index_dir).path != rebuilt.path


def test_a_builder_that_finds_the_index_published_keeps_it(tmp_path, tokenizer):
    """Without a working lock (a file system without flock) the second of two builders loses the rename: it
    discards its copy and the first's index stays as it was."""
    _media(tmp_path)
    path = _write(tmp_path / "d.jsonl", [_record(i) for i in range(5)])
    settings = _settings(tokenizer)
    first = _open(path, settings, tmp_path / "idx")
    inode = (first.path / "meta.json").stat().st_ino
    index_module.build_indexes([index_job(str(path), tmp_path, settings, tmp_path / "idx")], settings, progress=False)
    assert (first.path / "meta.json").stat().st_ino == inode  # the same files: not replaced
    assert _content(TokenIndex(first.path)) == _content(first)
    assert [p.name for p in (tmp_path / "idx").iterdir() if p.is_dir()] == [first.path.name]  # no temporary left


# ------------------------------------------------------------------------------------------------------------
# Atomic builds, concurrent builders, waiting ranks (child processes)
# ------------------------------------------------------------------------------------------------------------
CHILD = r"""
import json, os, sys, time
from pathlib import Path
from transformers import AutoTokenizer
from videoccam.dataset import index as m
data, models, index_dir = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
m.UNIT_RECORDS = int(os.environ.get("UNIT", m.UNIT_RECORDS))
go = os.environ.get("GO")
while go and not Path(go).exists():
    time.sleep(0.01)
settings = m.IndexSettings(AutoTokenizer.from_pretrained(models), {"INSTRUCTION": "U: {input}\nA: ", "SEP": "\n"},
                           num_queries=8, max_length=128)
job = m.index_job(str(data), data.parent, settings, index_dir)
built = []
original = m.build_indexes
m.build_indexes = lambda *a, **k: (built.append(True), original(*a, **k))
(index,) = m.ensure_indexes([job], settings, 1, progress=False)
print(json.dumps({"built": bool(built), "rows": len(index), "first": index.row(0)["input_ids"].tolist(),
                  "path": str(index.path)}))
"""


def _child(tmp_path: Path, data: Path, tiny_models: Path, index_dir: Path, **env) -> subprocess.Popen:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **{k: str(v) for k, v in env.items()}}
    return subprocess.Popen([sys.executable, str(script), str(data), str(tiny_models / "qwen2"), str(index_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment)  # fmt: skip


def _result(process: subprocess.Popen) -> dict:
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def big_file(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("big")
    return _write(root / "big.jsonl", [_record(i, words=30) for i in range(4000)])


def test_kill_9_during_a_build_leaves_nothing_a_later_run_reads(tmp_path, big_file, tiny_models):
    index_dir = tmp_path / "idx"
    child = _child(tmp_path, big_file, tiny_models, index_dir, UNIT=200)
    deadline = time.monotonic() + 300
    while not any(index_dir.glob(".*.tmp-*/unit-*.arrow")):  # the build is under way: units are being written
        assert child.poll() is None and time.monotonic() < deadline, child.communicate()[1][-3000:]
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert not [p for p in index_dir.iterdir() if not p.name.startswith(".") and p.is_dir()]  # nothing published
    assert list(index_dir.glob(".*.tmp-*"))  # only the temporary folder is left

    result = _result(_child(tmp_path, big_file, tiny_models, index_dir))
    assert result["built"] and result["rows"] == 4000
    assert not list(index_dir.glob(".*.tmp-*"))  # the next builder removed the killed one's leftovers
    complete = TokenIndex(result["path"])
    assert complete.meta["num_records"] == 4000 and not complete.errors()


def test_two_builders_at_once_build_once(tmp_path, big_file, tiny_models):
    index_dir, go = tmp_path / "idx", tmp_path / "go"
    children = [_child(tmp_path, big_file, tiny_models, index_dir, GO=go) for _ in range(2)]
    time.sleep(1)
    go.write_text("")
    results = [_result(child) for child in children]
    assert sorted(r["built"] for r in results) == [False, True]  # one built it, the other waited and opened it
    assert results[0]["path"] == results[1]["path"] and results[0]["first"] == results[1]["first"]
    assert [p.name for p in index_dir.iterdir() if p.is_dir()] == [Path(results[0]["path"]).name]


def test_a_rank_other_than_local_rank_0_waits_for_its_index(tmp_path, big_file, tiny_models):
    index_dir = tmp_path / "idx"
    waiter = _child(tmp_path, big_file, tiny_models, index_dir, LOCAL_RANK=1, WORLD_SIZE=2)
    time.sleep(2)
    assert waiter.poll() is None  # still waiting
    assert not index_dir.exists() or not any(index_dir.iterdir())  # and building nothing
    builder = _child(tmp_path, big_file, tiny_models, index_dir, LOCAL_RANK=0, WORLD_SIZE=2)
    first, second = _result(builder), _result(waiter)
    assert first["built"] and not second["built"] and first["path"] == second["path"]
    assert first["rows"] == second["rows"] == 4000


TORCHRUN_RANK = r"""
import hashlib, json, os, sys
from pathlib import Path
from transformers import AutoTokenizer, SiglipImageProcessor
from xtuner.utils import PROMPT_TEMPLATE
from videoccam.dataset import index as m
from videoccam.dataset.dataset import VideoCCAMDataset
data, models, index_dir, out = sys.argv[1:5]
built = []
original = m.build_indexes
m.build_indexes = lambda *a, **k: (built.append(True), original(*a, **k))
dataset = VideoCCAMDataset(data, AutoTokenizer.from_pretrained(f"{models}/qwen2"),
                           SiglipImageProcessor.from_pretrained(f"{models}/siglip"), PROMPT_TEMPLATE.qwen_chat,
                           num_queries=8, max_length=128, num_frames=4, index_dir=index_dir, progress=False)
digest = hashlib.sha256(json.dumps([dataset.tokens(i) for i in range(len(dataset))]).encode()).hexdigest()
Path(out, f"rank{os.environ['RANK']}.json").write_text(json.dumps(
    {"local_rank": os.environ["LOCAL_RANK"], "built": bool(built), "samples": len(dataset), "digest": digest,
     "index": str(dataset.indexes[0].path)}))
"""


@pytest.mark.slow
def test_a_two_rank_torchrun_start_builds_once_and_both_ranks_read_the_same_records(tmp_path, big_file, tiny_models):
    import socket

    script, out = tmp_path / "rank.py", tmp_path / "out"
    script.write_text(TORCHRUN_RANK)
    out.mkdir()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
                    str(script), str(big_file), str(tiny_models), str(tmp_path / "idx"), str(out)],
                   env=env, check=True, capture_output=True, timeout=600)  # fmt: skip
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["built"] for r in ranks] == [True, False]  # local rank 0 built it, rank 1 waited and opened it
    assert ranks[0]["samples"] == ranks[1]["samples"] == 4000
    assert ranks[0]["digest"] == ranks[1]["digest"] and ranks[0]["index"] == ranks[1]["index"]
