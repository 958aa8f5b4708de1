"""Exported models work with the transformers users have: a second venv (CPU torch 2.13.0 + the newest transformers
pip serves, without this package) loads and chats with what tools/convert_to_hf.py writes.

* the single folder: upstream's web-demo call sequence (tests/tools/upstream_calls.py: two turns through
  the cache, one message with two videos, ``chat()`` with two media) gives the same tokens and logits (1e-4) as
  under the training pin (transformers 4.48, this venv, in a process without ``videoccam``), and the cache
  holds exactly the conversation;
* a folder whose projector is a released one with its own code (the v1.0 replica, fine-tuned) does the same;
* xtuner's ``projector/`` (the project's projector, and the released projector of the released layout) loads with
  ``AutoModel.from_pretrained(..., trust_remote_code=True)`` and computes what it computes under 4.48 (1e-5).

The venv is built once (``pip install --no-compile torch==2.13.0 <spec> pillow``, about 1-2 minutes; pip's cache
and the machine's wheels are used) into work_dirs/venv-newest-transformers (another spec: its own folder) and reused.
``VIDEOCCAM_COMPAT_TRANSFORMERS`` sets the spec (default ``transformers``: the newest release; e.g.
``transformers<5`` for the newest 4.x); ``VIDEOCCAM_COMPAT_REBUILD=1`` rebuilds it. Needs pip to reach its index.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT, isolated_env
from tests.tools import upstream_calls
from tests.tools.conftest import check_demo_turns, run_upstream_calls

SPEC = os.environ.get("VIDEOCCAM_COMPAT_TRANSFORMERS", "transformers")
VENV = ROOT / "work_dirs" / ("venv-newest-transformers" if SPEC == "transformers" else
                             "venv-" + re.sub(r"[^A-Za-z0-9.]+", "-", SPEC).strip("-"))  # fmt: skip
TORCH = "torch==2.13.0"

def _venv_python() -> Path:
    return VENV / "bin" / "python"


def _installed() -> dict | None:
    marker = VENV / "videoccam-compat.json"
    return json.loads(marker.read_text()) if marker.is_file() and _venv_python().exists() else None


@pytest.fixture(scope="module")
def newest_python() -> str:
    """The interpreter of the venv with the newest transformers, built here once and reused."""
    found = _installed()
    if found is None or found["spec"] != SPEC or os.environ.get("VIDEOCCAM_COMPAT_REBUILD") == "1":
        shutil.rmtree(VENV, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, timeout=300)
        install = subprocess.run(
            [str(_venv_python()), "-m", "pip", "install", "--quiet", "--no-compile", "--disable-pip-version-check",
             TORCH, SPEC, "pillow", "numpy"],
            capture_output=True, text=True, timeout=1200,
        )  # fmt: skip
        assert install.returncode == 0, f"pip could not build the venv:\n{install.stdout[-3000:]}\n{install.stderr[-3000:]}"
        versions = subprocess.run(
            [str(_venv_python()), "-c", "import json, torch, transformers; print(json.dumps("
             "{'torch': torch.__version__, 'transformers': transformers.__version__}))"],
            capture_output=True, text=True, check=True, timeout=300,
        )  # fmt: skip
        found = {"spec": SPEC, **json.loads(versions.stdout)}
        (VENV / "videoccam-compat.json").write_text(json.dumps(found))
    probe = subprocess.run([str(_venv_python()), "-c", "import importlib.util; print(importlib.util.find_spec('videoccam'))"],
                           capture_output=True, text=True, env=isolated_env(VENV), cwd=VENV, timeout=300)  # fmt: skip
    assert probe.stdout.strip() == "None", "the compatibility venv can import videoccam"
    print(f"compatibility venv: transformers {found['transformers']}, torch {found['torch']} ({SPEC})")
    if SPEC == "transformers":
        assert int(found["transformers"].split(".")[0]) >= 5, found
    return str(_venv_python())


def _same_demo(pinned: dict, newest: dict) -> None:
    assert [t["output_ids"] for t in newest["turns"]] == [t["output_ids"] for t in pinned["turns"]]
    assert [t["cache_length"] for t in newest["turns"]] == [t["cache_length"] for t in pinned["turns"]]
    for key in ("turn1", "cached", "chat"):
        assert newest["checks"][key] == pinned["checks"][key], key
    torch.testing.assert_close(torch.tensor(newest["checks"]["last_logits"]),
                               torch.tensor(pinned["checks"]["last_logits"]), atol=1e-4, rtol=0)  # fmt: skip


@pytest.fixture(scope="module")
def exported(released_v10_finetuned, tiny_trained, tmp_path_factory) -> dict[str, Path]:
    """The v1.0 replica fine-tuned, as our single folder (its own projector code inside) and in the released
    layout, and the tiny stage-2 model in xtuner's layout."""
    from videoccam.export.hf_folder import save_hf_folder
    from videoccam.export.released_layout import save_released_layout
    from videoccam.export.xtuner_layout import save_xtuner_layout
    from videoccam.inference.load import load_trained_model

    tuned = released_v10_finetuned
    model, cfg = load_trained_model(tuned.config, tuned.checkpoint, tuned.options)
    out = tmp_path_factory.mktemp("compat_exports")
    save_hf_folder(model, cfg, out / "single")  # as tools/convert_to_hf.py writes it (tests/model/test_released.py)
    save_released_layout(model, cfg, out / "released")
    save_xtuner_layout(tiny_trained.model, tiny_trained.cfg, out / "xtuner", fp32=True)
    return {"single": out / "single", "released_projector": out / "released/projector",
            "xtuner_projector": out / "xtuner/projector"}


@pytest.fixture(scope="module")
def newest(newest_python, tiny_hf_videoccam, exported, tmp_path_factory) -> dict:
    """Every check in one process of the newest-transformers venv (one import of torch and transformers)."""
    return run_upstream_calls(tmp_path_factory.mktemp("newest"), demos=[tiny_hf_videoccam, exported["single"]],
                              projectors=[exported["xtuner_projector"], exported["released_projector"]],
                              python=newest_python)  # fmt: skip


def test_converted_folder_runs_the_upstream_demo_under_the_newest_transformers(tiny_hf_videoccam, tiny_hf_demo,
                                                                              newest):  # fmt: skip
    result = newest["demo"][str(tiny_hf_videoccam)]
    num_queries = json.loads((tiny_hf_videoccam / "config.json").read_text())["projector_config"]["num_queries"]
    check_demo_turns(result, num_queries)
    _same_demo(tiny_hf_demo, result)


def test_released_projector_folders_under_the_newest_transformers(exported, newest, tmp_path):
    # under the training pin, in this process (transformers 4.48)
    pinned = upstream_calls.run(tmp_path / "pinned.json", demo_folders=[exported["single"]],
                                projector_folders=[exported["xtuner_projector"], exported["released_projector"]])  # fmt: skip
    # the single folder with the released projector's own code: the demo, as under 4.48
    check_demo_turns(newest["demo"][str(exported["single"])], 16)
    _same_demo(pinned["demo"][str(exported["single"])], newest["demo"][str(exported["single"])])
    # projector/ of xtuner's layout (the project's projector) and of the released layout (the release's code)
    for name, expected_class in (("xtuner_projector", "CCAMProjector"), ("released_projector", "CCAMModel")):
        a, b = pinned["projector"][str(exported[name])], newest["projector"][str(exported[name])]
        assert a["class"] == b["class"] == expected_class
        torch.testing.assert_close(torch.tensor(b["out"]), torch.tensor(a["out"]), atol=1e-5, rtol=0)
