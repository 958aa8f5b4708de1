"""Shared fixtures: tiny random models and synthetic data, built once per test session with the project's tools,
and the tiny stage-2 model exported with the project's exporter.

The test session is an entry point: it applies the xtuner/mmengine CPU patches (videoccam/xtuner_compat.py) once,
as the tools do; library modules never do (tests/test_xtuner_compat.py).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

from videoccam import xtuner_compat

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
xtuner_compat.install()


def load_tool(name: str):
    """Import tools/<name>.py as a module to call its ``main`` (tools/ is a folder of scripts, not a package)."""
    module_name = f"videoccam_tool_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def isolated_python_path() -> list[str]:
    """sys.path entries a child process may use: everything but the project (no `videoccam` package).

    Children started with ``python -S`` (no site-packages ``.pth`` files: neither the editable install's finder nor
    the xtuner hook) and this ``sys.path`` cannot import ``videoccam``.
    """
    return [p for p in sys.path if p and os.path.isdir(p) and not os.path.exists(os.path.join(p, "videoccam"))]


def isolated_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP")}
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_MODULES_CACHE=str(tmp / "hf_modules"),
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS="1",
    )
    return env


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny_models")
    # random LLM weights: fast, and no test depends on what the LLM knows
    assert load_tool("make_tiny_models").main(["--out", str(out), "--pretrain-steps", "0"]) == 0
    return out


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synthetic_data")
    assert load_tool("make_synthetic_data").main(["--out", str(out), "--num-videos", "12", "--num-images", "4",
                                                  "--num-text", "4"]) == 0
    return out


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """``ROOT/<benchmark>/`` synthetic layouts of all four benchmarks (read-only for the tests)."""
    from videoccam.synthetic.benchmarks import make_all

    root = tmp_path_factory.mktemp("synthetic_bench")
    make_all(root)
    return root


def tiny_cfg_options(tiny_models: Path, data_dir: Path, data_file: str = "train.json", llm: str = "qwen2") -> list[str]:
    """--cfg-options that point a configs/tiny config at fixture folders instead of work_dirs/."""
    llm_path, vis_path = tiny_models / llm, tiny_models / "siglip"
    return [
        f"model.llm.pretrained_model_name_or_path={llm_path}",
        f"model.visual_encoder.pretrained_model_name_or_path={vis_path}",
        f"train_dataloader.dataset.tokenizer.pretrained_model_name_or_path={llm_path}",
        f"train_dataloader.dataset.image_processor.pretrained_model_name_or_path={vis_path}",
        f"tokenizer.pretrained_model_name_or_path={llm_path}",
        f"image_processor.pretrained_model_name_or_path={vis_path}",
        f"train_dataloader.dataset.data_path={data_dir / data_file}",
        f"train_dataloader.dataset.data_root={data_dir}",
    ]


@pytest.fixture(scope="session")
def trained(tiny_models, tmp_path_factory):
    """The tiny stage-2 model (LoRA on LLM and SigLIP, trainable weights perturbed) and its checkpoint."""
    from tests.export.helpers import build_trained

    return build_trained(tiny_models, tmp_path_factory.mktemp("export_ckpt"))


@pytest.fixture(scope="session")
def hf_dir(trained, tmp_path_factory):
    """``trained`` written as the single Hugging Face folder by ``save_hf_folder``."""
    from videoccam.export.hf_folder import save_hf_folder

    out = tmp_path_factory.mktemp("export_hf") / "videoccam_tiny_export"
    files = save_hf_folder(trained.model, trained.cfg, out, save_pretrained_kwargs={"max_shard_size": "5GB"})
    assert out / "model.safetensors" in files
    return out


@pytest.fixture(scope="session")
def loaded(hf_dir):
    """``(model, tokenizer, image_processor)`` of ``hf_dir`` through ``AutoModel`` (trust_remote_code)."""
    from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(hf_dir, trust_remote_code=True).eval()
    return model, AutoTokenizer.from_pretrained(hf_dir), AutoImageProcessor.from_pretrained(hf_dir)
