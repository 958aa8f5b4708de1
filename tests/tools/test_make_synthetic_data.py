"""tools/make_synthetic_data.py: the command line of videoccam/synthetic/shapes.py."""

from __future__ import annotations

import json

import pytest

from tests.conftest import load_tool

synthetic = load_tool("make_synthetic_data")


def test_cli(tmp_path, capsys):
    assert synthetic.main(["--out", str(tmp_path), "--num-videos", "2", "--num-images", "1", "--num-text", "1",
                           "--num-val-videos", "1", "--seed", "3"]) == 0  # fmt: skip
    assert "train.json (4 records)" in capsys.readouterr().out
    assert len(json.loads((tmp_path / "train.json").read_text())) == 4
    with pytest.raises(SystemExit) as info:
        synthetic.main(["--help"])
    assert info.value.code == 0
    with pytest.raises(SystemExit) as info:
        synthetic.main(["--out", str(tmp_path / "x"), "--size", "63"])
    assert info.value.code == 2
