"""Fixtures of the evaluation tests: the synthetic benchmark layouts, written once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from videoccam.synthetic.benchmarks import make_all


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``ROOT/<benchmark>/`` synthetic layouts of all four benchmarks (read-only for the tests)."""
    root = tmp_path_factory.mktemp("synthetic_bench")
    make_all(root)
    return root
