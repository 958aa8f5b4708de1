"""tools/make_tiny_models.py: the command line of videoccam/synthetic/tiny_models.py (the models themselves are
tested in tests/synthetic/test_tiny_models.py)."""

from __future__ import annotations

import pytest

from tests.conftest import load_tool

tiny = load_tool("make_tiny_models")


def test_help():
    with pytest.raises(SystemExit) as info:
        tiny.main(["--help"])
    assert info.value.code == 0
