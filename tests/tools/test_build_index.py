"""tools/build_index.py builds a config's indexes once (training then opens them) and reports bad data."""

from __future__ import annotations

import json

from tests.conftest import ROOT, load_tool, tiny_cfg_options

STAGE2 = str(ROOT / "configs/tiny/videoccam_tiny_qwen2_stage2.py")


def test_builds_once_and_training_opens_the_same_index(tiny_models, synthetic_data, tmp_path, capsys):
    from videoccam.config import build_from_cfg, load_config
    from videoccam.cli import parse_cfg_options

    tool = load_tool("build_index")
    options = [*tiny_cfg_options(tiny_models, synthetic_data), f"train_dataloader.dataset.index_dir={tmp_path / 'idx'}"]
    assert tool.main([STAGE2, "--no-progress", "--cfg-options", *options]) == 0
    out = capsys.readouterr().out
    records = len(json.loads((synthetic_data / "train.json").read_text()))
    assert f"{records} records, {records} usable, 0 bad" in out and str(tmp_path / "idx") in out
    (folder,) = [p for p in (tmp_path / "idx").iterdir() if p.is_dir()]
    built = json.loads((folder / "meta.json").read_text())["built_by"]

    dataset = build_from_cfg(load_config(STAGE2, parse_cfg_options(options)).train_dataloader.dataset)
    assert dataset.indexes[0].path == folder and dataset.indexes[0].meta["built_by"] == built  # not rebuilt
    assert len(dataset) == records


def test_a_bad_record_with_on_error_raise_exits_1(tiny_models, synthetic_data, tmp_path, capsys):
    records = json.loads((synthetic_data / "train.json").read_text())
    records[2]["conversations"] = []
    data = tmp_path / "bad.json"
    data.write_text(json.dumps(records))
    options = [*tiny_cfg_options(tiny_models, synthetic_data), f"train_dataloader.dataset.data_path={data}",
               "train_dataloader.dataset.on_error=raise", f"train_dataloader.dataset.index_dir={tmp_path / 'idx'}"]
    assert load_tool("build_index").main([STAGE2, "--no-progress", "--cfg-options", *options]) == 1
    assert "bad.json record 2 (0-based; starts on line 1; id=" in capsys.readouterr().err
    options[-2] = "train_dataloader.dataset.on_error=skip"
    assert load_tool("build_index").main([STAGE2, "--no-progress", "--cfg-options", *options]) == 0
    assert f"{len(records)} records, {len(records) - 1} usable, 1 bad" in capsys.readouterr().out
