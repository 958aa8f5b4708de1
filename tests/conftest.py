"""Shared fixtures: tiny random models and synthetic data, built once per test session with the project's tools,
and the tiny stage-2 model exported with the project's exporter.

The test session is an entry point: it applies the xtuner/mmengine CPU patches (videoccam/xtuner_compat.py) once,
as the tools do; library modules never do (tests/test_xtuner_compat.py).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass
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
    """sys.path entries a child process may use: everything but the project (no `videoccam` package) and this
    process' remote-code module cache (a `transformers_modules` package there would shadow the child's own).

    Children started with ``python -S`` (no site-packages ``.pth`` files: neither the editable install's finder nor
    the xtuner hook) and this ``sys.path`` cannot import ``videoccam``.
    """
    return [p for p in sys.path if p and os.path.isdir(p) and not os.path.exists(os.path.join(p, "videoccam"))
            and not os.path.isdir(os.path.join(p, "transformers_modules"))]  # fmt: skip


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


class Payload:
    """Unpickling this runs ``touch MARKER``: what a malicious checkpoint does (``__reduce__`` names os.system)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        import shlex

        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


def write_malicious_checkpoint(path: Path, marker: Path, content: dict | None = None) -> Path:
    """``torch.save`` of ``content`` (default: a valid-looking mmengine checkpoint) plus a :class:`Payload`."""
    import torch

    checkpoint = dict(content if content is not None else {"state_dict": {}, "meta": {"seed": 0}})
    checkpoint["payload"] = Payload(marker)
    torch.save(checkpoint, path)
    return path


@pytest.fixture(scope="session", autouse=True)
def index_dir(tmp_path_factory) -> Path:
    """Tokenised data indexes (videoccam.dataset.index) of the session, in a temp folder (children inherit it)."""
    path = tmp_path_factory.mktemp("videoccam_index")
    os.environ["VIDEOCCAM_INDEX_DIR"] = str(path)
    return path


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny_models")
    # random LLM weights: fast, and no test depends on what the LLM knows
    assert load_tool("make_tiny_models").main(["--out", str(out), "--pretrain-steps", "0",
                                                  "--vision-pretrain-steps", "0"]) == 0
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


# ----------------------------------------------------------------------------------------------------------------
# Released Video-CCAM models: tiny replicas, and fine-tunings of them on data/example
# ----------------------------------------------------------------------------------------------------------------
RELEASED_CONFIGS = {
    "v1_0": ROOT / "configs/tiny/videoccam_tiny_qwen2_finetune_released.py",
    "v1_2": ROOT / "configs/tiny/videoccam_tiny_qwen2_finetune_released_v1_2.py",
}


@pytest.fixture(scope="session")
def released_replicas(tiny_models, tmp_path_factory) -> dict[str, Path]:
    """``{"base": tiny models, "v1_0": xtuner-layout replica, "v1_2": single-folder replica}`` (read-only)."""
    out = tmp_path_factory.mktemp("released_replicas")
    assert load_tool("make_released_replicas").main(["--out", str(out), "--base-models", str(tiny_models)]) == 0
    return {"base": tiny_models, "v1_0": out / "v1_0", "v1_2": out / "v1_2"}


@pytest.fixture(scope="session")
def example_media(tmp_path_factory) -> Path:
    """data/example with its media written (tools/make_example_data.py)."""
    out = tmp_path_factory.mktemp("example_data")
    assert load_tool("make_example_data").main(["--out", str(out)]) == 0
    return out


def released_options(replicas: dict[str, Path], version: str, data_dir: Path | None = None) -> dict[str, str]:
    """--cfg-options pointing a configs/tiny released fine-tuning config at the fixture replicas (and data)."""
    released = str(replicas[version])
    if version == "v1_0":
        llm, vision = str(replicas["base"] / "qwen2"), str(replicas["base"] / "siglip")
        options = {
            "model.llm.llm_name_or_path": llm,
            "model.visual_encoder.visual_encoder_name_or_path": vision,
        }
    else:
        llm = vision = released
        options = {}
    options.update({
        "released_path": released,
        "model.llm.released_path": released,
        "model.visual_encoder.released_path": released,
        "model.projector.released_path": released,
        "tokenizer.pretrained_model_name_or_path": llm,
        "image_processor.pretrained_model_name_or_path": vision,
        "train_dataloader.dataset.tokenizer.pretrained_model_name_or_path": llm,
        "train_dataloader.dataset.image_processor.pretrained_model_name_or_path": vision,
    })  # fmt: skip
    if data_dir is not None:
        options["train_dataloader.dataset.data_path"] = str(data_dir / "train.jsonl")
        options["train_dataloader.dataset.data_root"] = str(data_dir)
    return options


@dataclass
class FineTuned:
    version: str
    config: Path
    options: dict[str, str]  # --cfg-options of config (replicas and data)
    work_dir: Path
    checkpoint: Path
    losses: list[float]


def _finetune_released(version: str, replicas, data_dir: Path, work_dir: Path) -> FineTuned:
    """20 iterations of the released fine-tuning config on data/example, through tools/train.py."""
    import json

    config = RELEASED_CONFIGS[version]
    options = released_options(replicas, version, data_dir)
    # 4 frames per video keep the 20 iterations short (decoding dominates on CPU)
    argv = [str(config), "--work-dir", str(work_dir), "--cfg-options", *(f"{k}={v}" for k, v in options.items()),
            "default_hooks.logger.interval=1", "train_dataloader.dataset.num_frames=4"]  # fmt: skip
    assert load_tool("train").main(argv) == 0
    checkpoint = Path((work_dir / "last_checkpoint").read_text().strip())
    assert checkpoint.name == "iter_20.pth"
    logs = sorted(work_dir.glob("*/vis_data/scalars.json"))
    losses = [json.loads(line)["loss"] for line in logs[-1].read_text().splitlines() if '"loss"' in line]
    return FineTuned(version, config, options, work_dir, checkpoint, losses)


@pytest.fixture(scope="session")
def released_v10_finetuned(released_replicas, example_media, tmp_path_factory) -> FineTuned:
    return _finetune_released("v1_0", released_replicas, example_media, tmp_path_factory.mktemp("ft_v1_0"))


@pytest.fixture(scope="session")
def released_v12_finetuned(released_replicas, example_media, tmp_path_factory) -> FineTuned:
    return _finetune_released("v1_2", released_replicas, example_media, tmp_path_factory.mktemp("ft_v1_2"))
