"""Fixtures of the tool tests: a tiny "trained" Video-CCAM checkpoint and its converted Hugging Face folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import load_tool
from tests.export.helpers import STAGE2, Trained, as_cli_options, build_trained


@pytest.fixture(scope="session")
def tiny_trained(tiny_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """The tiny stage-2 model (LoRA on LLM and SigLIP, weights perturbed) and its mmengine checkpoint.

    Use with ``--config tests.export.helpers.STAGE2 --checkpoint trained.checkpoint --cfg-options
    *as_cli_options(trained.options)``.
    """
    return build_trained(tiny_models, tmp_path_factory.mktemp("tiny_trained"))


@pytest.fixture(scope="session")
def tiny_hf_videoccam(tiny_trained: Trained, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny_trained`` converted with ``tools/convert_to_hf.py`` into the single-folder Hugging Face format.

    ``VIDEOCCAM_TINY_HF_MODEL`` may point to an existing converted folder instead.
    """
    path = os.environ.get("VIDEOCCAM_TINY_HF_MODEL")
    if path:
        if not (Path(path) / "config.json").is_file():
            raise FileNotFoundError(f"VIDEOCCAM_TINY_HF_MODEL={path} holds no config.json")
        return Path(path)
    out = tmp_path_factory.mktemp("tiny_hf_videoccam") / "model"
    argv = [str(STAGE2), str(tiny_trained.checkpoint), str(out), "--cfg-options", *as_cli_options(tiny_trained.options)]
    assert load_tool("convert_to_hf").main(argv) == 0
    return out
