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


@pytest.fixture(scope="session")
def tiny_hf_demo(tiny_hf_videoccam: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """What upstream's web-demo calls (tests/tools/upstream_calls.py) give on ``tiny_hf_videoccam`` under the
    training pin (transformers 4.48), in a process where videoccam cannot be imported."""
    result = run_upstream_calls(tmp_path_factory.mktemp("tiny_hf_demo"), demos=[tiny_hf_videoccam])
    return result["demo"][str(tiny_hf_videoccam)]


UPSTREAM_CALLS = Path(__file__).with_name("upstream_calls.py")


def run_upstream_calls(out_dir: Path, demos=(), projectors=(), python: str | None = None, timeout: int = 900) -> dict:
    """Run tests/tools/upstream_calls.py (upstream's web-demo calls on ``demos`` folders, upstream v1.0's projector
    call on ``projectors`` folders) in one process where ``videoccam`` is not importable.

    ``python``: another interpreter (a venv without this package); None: this one, started with ``-S`` and a
    ``sys.path`` without the project (tests.conftest.isolated_python_path). Returns the script's JSON.
    """
    import json
    import subprocess
    import sys

    from tests.conftest import isolated_env, isolated_python_path

    out_dir.mkdir(parents=True, exist_ok=True)
    env = isolated_env(out_dir)
    if python is None:
        argv = [sys.executable, "-S"]
        env["PYTHONPATH"] = os.pathsep.join(isolated_python_path())
    else:
        argv = [python]
    result_file = out_dir / "upstream_calls.json"
    args = [str(result_file), "--demo", *map(str, demos), "--projector", *map(str, projectors)]
    run = subprocess.run([*argv, str(UPSTREAM_CALLS), *args], cwd=out_dir, env=env, stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, timeout=timeout)  # fmt: skip
    assert run.returncode == 0, f"stdout:\n{run.stdout[-3000:]}\nstderr:\n{run.stderr[-6000:]}"
    result = json.loads(result_file.read_text())
    assert not result["videoccam_imported"]
    modules = [r["model_module"] for r in result["demo"].values()] + [r["module"] for r in result["projector"].values()]
    assert all(m.startswith("transformers_modules") for m in modules), modules
    return result


def check_demo_turns(result: dict, num_queries: int) -> None:
    """The demo's cache holds exactly the conversation: each turn's prompt (media expanded) and reply."""
    length = 0
    for turn in result["turns"]:
        length += len(turn["input_ids"]) + turn["media"] * (num_queries - 1) + len(turn["output_ids"])
        assert turn["cache_length"] == length, result["turns"]
    assert [turn["media"] for turn in result["turns"]] == [1, 0, 2]
    checks = result["checks"]
    assert checks["cached"] == checks["uncached"] and len(checks["cached"]) == 5
