"""tools/validate_data.py (CLI) on the broken corpus and on the example dataset, and tools/make_example_data.py."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT, load_tool
from tests.dataset import corpus

CUSTOM = str(ROOT / "configs/tiny/videoccam_tiny_qwen2_custom_finetune.py")


@pytest.fixture(scope="module")
def example_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("example")
    assert load_tool("make_example_data").main(["--out", str(out)]) == 0
    return out


def test_example_jsonl_is_what_the_generator_writes(example_dir):
    # the checked-in data/example/train.jsonl references exactly the media the tool writes
    assert (example_dir / "train.jsonl").read_text() == (ROOT / "data/example/train.jsonl").read_text()
    records = [json.loads(line) for line in (example_dir / "train.jsonl").read_text().splitlines()]
    for record in records:
        for key in ("video", "image", "subtitles"):
            if key in record:
                assert (example_dir / record[key]).exists(), record
    kinds = {("frames/" in r.get("video", ""), r.get("video", "").endswith(".gif"), "image" in r) for r in records}
    assert {(True, False, False), (False, True, False), (False, False, True)} <= kinds
    assert any("num_frames" in r for r in records) and any("subtitles" in r for r in records)


def test_cli_names_every_bad_record_and_exits_1(tmp_path, tiny_models, capsys):
    data = corpus.build_corpus(tmp_path)
    report_file = tmp_path / "report.json"
    status = load_tool("validate_data").main([
        str(data), "--root", str(tmp_path), "--tokenizer", str(tiny_models / "qwen2"), "--num-queries", "32",
        "--max-length", "512", "--workers", "2", "--json-report", str(report_file), "--no-progress",
    ])  # fmt: skip
    out = capsys.readouterr().out
    assert status == 1
    for index, (category, words) in corpus.BAD.items():
        line = next(line for line in out.splitlines() if f" line {index + 1} (record {index}, 0-based" in line)
        assert line.startswith(f"BAD   [{category}] {data} line") and words in line and "; fix: " in line, line
    for index in corpus.GOOD:
        assert f"(record {index}, " not in out
    assert "Totals: 14 records, 6 ok, 8 bad" in out
    report = json.loads(report_file.read_text())
    assert report["num_bad"] == 8 and report["bad_by_category"]["media_corrupt"] == 2


def test_cli_says_what_training_says_line_fix_and_nearest_name(tmp_path, tiny_models, capsys):
    """Each bad record's text is the message the training dataset raises for it (its first line)."""
    from transformers import AutoTokenizer, SiglipImageProcessor
    from xtuner.utils import PROMPT_TEMPLATE

    from videoccam.dataset.dataset import VideoCCAMDataset
    from videoccam.dataset.records import RecordError

    (tmp_path / "videos").mkdir()
    for name in ("clip_001.mp4", "clip_002.mp4"):
        (tmp_path / "videos" / name).write_bytes(b"x")
    turns = [{"from": "human", "value": "<video>\nWhat happens?"}, {"from": "gpt", "value": "A square."}]
    typo = {"id": "typo", "video": "videos/clip_0002.mp4", "conversations": turns}
    two = {"id": "two", "video": "videos/clip_001.mp4", "conversations": [
        {"from": "human", "value": "<video><video>?"}, {"from": "gpt", "value": "A."}]}  # fmt: skip
    data = tmp_path / "d.jsonl"
    data.write_text("\n" + json.dumps(typo) + "\n" + json.dumps(two) + "\n")
    assert load_tool("validate_data").main([str(data), "--no-decode", "--no-progress"]) == 1
    bad = [line for line in capsys.readouterr().out.splitlines() if line.startswith("BAD")]
    assert bad == [
        f"BAD   [media_missing] {data} line 2 (record 0, 0-based; id='typo'): video not found: {tmp_path}/videos/"
        "clip_0002.mp4 (did you mean clip_002.mp4?); fix: correct the path in the record, or put the file there",
        f"BAD   [placeholders] {data} line 3 (record 1, 0-based; id='two'): has 2 <video> placeholders for 1 video; "
        "fix: remove one"]  # fmt: skip
    with pytest.raises(RecordError) as info:
        VideoCCAMDataset(str(data), AutoTokenizer.from_pretrained(str(tiny_models / "qwen2")),
                         SiglipImageProcessor.from_pretrained(str(tiny_models / "siglip")), PROMPT_TEMPLATE.qwen_chat,
                         num_queries=32, max_length=512, index_dir=str(tmp_path / "index"))  # fmt: skip
    assert bad[0] == f"BAD   [media_missing] {str(info.value).splitlines()[0]}"


def test_cli_on_the_example_dataset_with_the_config_exits_0(example_dir, tiny_models, capsys):
    status = load_tool("validate_data").main([
        str(example_dir / "train.jsonl"), "--root", str(example_dir), "--config", CUSTOM, "--no-progress",
        "--cfg-options", f"train_dataloader.dataset.tokenizer.pretrained_model_name_or_path={tiny_models / 'qwen2'}",
    ])  # fmt: skip
    out = capsys.readouterr().out
    assert status == 0, out
    assert "Totals: 12 records, 12 ok, 0 bad" in out
    assert "num_queries=32" in out and "max_length=512" in out and "lengths NOT checked" not in out


def test_cli_errors(tmp_path, capsys):
    tool = load_tool("validate_data")
    assert tool.main([str(tmp_path / "missing.jsonl"), "--no-progress"]) == 1
    assert "data file not found" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text('[{"id": 1},\n{"id": 2\n')
    assert tool.main([str(bad), "--no-progress"]) == 1
    assert "bad.json: not valid JSON at line" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        tool.main([str(bad), "--tokenizer", "x"])  # needs --num-queries and --max-length


def test_cli_as_a_script(example_dir):
    run = subprocess.run([sys.executable, str(ROOT / "tools/validate_data.py"), str(example_dir / "train.jsonl"),
                          "--no-progress", "--pool", "process", "--workers", "2"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert "12 ok, 0 bad" in run.stdout


def test_cli_validates_every_file_of_a_config_or_a_pattern(tmp_path, tiny_models, capsys):
    data = corpus.build_corpus(tmp_path)
    shard = tmp_path / "shard-1.jsonl"
    shard.write_text(data.read_text().splitlines()[0] + "\n")  # one good record
    tool = load_tool("validate_data")
    assert tool.main([str(tmp_path / "shard-*.jsonl"), "--no-progress"]) == 0
    assert "Totals: 1 records, 1 ok, 0 bad" in capsys.readouterr().out
    from videoccam.config import load_config

    cfg = load_config(CUSTOM)  # a mixture of the two files (a config with data_sources, dumped)
    cfg.train_dataloader.dataset.update(data_path=None, data_root=None, data_sources=[
        dict(data_path=str(shard)), dict(data_path=str(data), on_error="skip")])
    cfg.dump(str(tmp_path / "mixture.py"))
    status = tool.main(["--config", str(tmp_path / "mixture.py"), "--no-progress", "--no-decode", "--cfg-options",
                        f"train_dataloader.dataset.tokenizer.pretrained_model_name_or_path={tiny_models / 'qwen2'}"])
    out = capsys.readouterr().out
    assert status == 1 and f"Validated {shard}" in out and f"Validated {data}" in out
    assert "2 files: 15 records" in out
