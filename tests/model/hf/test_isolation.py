"""videoccam/model/hf/ is self-contained: each file, and the set of them, loads where ``videoccam`` is not importable.

These files are copied beside exported weights and loaded by ``trust_remote_code``; the export tests load real
exported folders (tests/export/test_hf_folder.py, tests/export/test_xtuner_layout.py). Here every file of the
folder is checked on its own: statically (imports: the standard library, torch, transformers, and siblings by
relative import) and by importing it, with only the siblings it names, in a fresh ``python -S`` interpreter whose
``sys.path`` holds no ``videoccam`` package (``-S`` also skips the editable install's finder and the xtuner hook).
"""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import ROOT, isolated_env, isolated_python_path

HF_DIR = ROOT / "videoccam" / "model" / "hf"
FILES = sorted(p.name for p in HF_DIR.glob("*.py") if p.name != "__init__.py")


def _relative_imports(name: str) -> set[str]:
    """Sibling modules ``name`` imports (``from .x import y``)."""
    tree = ast.parse((HF_DIR / name).read_text())
    return {f"{node.module}.py" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level == 1}


def _closure(name: str) -> set[str]:
    todo, seen = [name], set()
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo.extend(_relative_imports(current))
    return seen


def test_the_folder_holds_the_exported_files():
    assert FILES == ["ccam_projector.py", "configuration_videoccam.py", "constants.py", "modeling_videoccam.py"]


@pytest.mark.parametrize("name", FILES)
def test_imports_only_the_standard_library_torch_transformers_and_siblings(name):
    roots = set()
    for node in ast.walk(ast.parse((HF_DIR / name).read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level in (0, 1), f"{name}:{node.lineno}: import from outside the folder"
            if node.level == 0:
                roots.add(node.module.split(".")[0])
            else:
                assert (HF_DIR / f"{node.module}.py").is_file(), f"{name}:{node.lineno}: no sibling {node.module}"
    assert roots - {"torch", "transformers"} <= set(sys.stdlib_module_names), (name, roots)


def test_each_file_and_the_set_load_without_the_project(tmp_path):
    packages = {}
    for name in [*FILES, "all"]:
        package = f"isolated_{Path(name).stem}"
        folder = tmp_path / package
        folder.mkdir()
        (folder / "__init__.py").write_text("")
        for member in (FILES if name == "all" else sorted(_closure(name))):
            shutil.copy(HF_DIR / member, folder / member)
        packages[package] = [Path(m).stem for m in (FILES if name == "all" else [name])]
    child_path = isolated_python_path()
    script = textwrap.dedent(
        """
        import importlib, importlib.util, json, sys
        sys.path[:0] = [TMP] + PATHS
        assert importlib.util.find_spec("videoccam") is None, "videoccam is importable; the test is not isolated"
        loaded = {}
        for package, modules in PACKAGES.items():
            for module in modules:
                importlib.import_module(f"{package}.{module}")
            loaded[package] = sorted(m.split(".", 1)[1] for m in sys.modules if m.startswith(package + "."))

        # the set works as a model: a tiny config, a forward through a placeholder
        import torch
        hf = "isolated_all"
        Config = importlib.import_module(hf + ".configuration_videoccam").VideoCCAMConfig
        Model = importlib.import_module(hf + ".modeling_videoccam").VideoCCAMForCausalLM
        config = Config(
            text_config=dict(model_type="qwen2", hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                             num_attention_heads=2, num_key_value_heads=1, vocab_size=50),
            vision_config=dict(model_type="siglip_vision_model", hidden_size=16, intermediate_size=32,
                               num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=16),
            projector_config=dict(num_queries=4, hidden_size=16, num_heads=2, intermediate_size=32,
                                  cross_hidden_size=16, output_size=32),
        )
        torch.manual_seed(0)
        model = Model(config).eval()
        ids = torch.tensor([[3, config.image_token_index, 5]])
        with torch.no_grad():
            logits = model(input_ids=ids, pixel_values=torch.randn(2, 3, 32, 32), num_frames=[2]).logits
        assert not [m for m in sys.modules if m.split(".")[0] == "videoccam"], "videoccam was imported"
        print(json.dumps({"loaded": loaded, "logits": list(logits.shape)}))
        """
    ).replace("TMP", repr(str(tmp_path))).replace("PATHS", repr(child_path)).replace("PACKAGES", repr(packages))
    result = subprocess.run([sys.executable, "-S", "-c", script], cwd=tmp_path, env=isolated_env(tmp_path),
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr[-4000:]}"
    out = json.loads(result.stdout.strip().splitlines()[-1])
    for name in FILES:  # each file loaded with nothing but the siblings it imports
        assert out["loaded"][f"isolated_{Path(name).stem}"] == sorted(Path(m).stem for m in _closure(name))
    assert out["loaded"]["isolated_all"] == sorted(Path(m).stem for m in FILES)
    assert out["logits"] == [1, 3 - 1 + 4, 50]  # the placeholder became num_queries visual tokens
