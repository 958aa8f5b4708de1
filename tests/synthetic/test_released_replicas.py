"""videoccam/synthetic/released_replicas.py (and tools/make_released_replicas.py): the tiny replicas of the released
layouts, whose remote code is not the project's."""

from __future__ import annotations

import json
import re

from videoccam.synthetic.released_replicas import REPLICA_CODE


def test_layouts(released_replicas):
    v10, v12 = released_replicas["v1_0"], released_replicas["v1_2"]
    for folder in ("llm_adapter", "visual_encoder_adapter"):
        assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in (v10 / folder).iterdir()}
    assert sorted(p.name for p in (v10 / "projector").iterdir()) == [
        "config.json", "configuration_ccam_projector.py", "model.safetensors", "modeling_ccam_projector.py"]
    vision = json.loads((v10 / "visual_encoder_adapter/adapter_config.json").read_text())
    assert sorted(vision["target_modules"]) == ["fc1", "fc2", "k_proj", "out_proj", "q_proj", "v_proj"]
    config = json.loads((v12 / "config.json").read_text())
    assert config["model_type"] == "videoccam" and config["architectures"] == ["VideoCCAM"]
    assert config["auto_map"] == {"AutoConfig": "configuration_videoccam.VideoCCAMConfig",
                                  "AutoModel": "modeling_videoccam.VideoCCAM"}
    tokens = json.loads((v12 / "tokenizer.json").read_text())["added_tokens"]
    ids = {t["content"]: t["id"] for t in tokens}
    assert (config["image_token_id"], config["video_token_id"]) == (ids["<image>"], ids["<video>"])
    assert {"preprocessor_config.json", "generation_config.json", "tokenizer_config.json"} <= \
        {p.name for p in v12.iterdir()}


def test_the_remote_code_is_not_the_projects():
    for path in REPLICA_CODE.glob("*.py"):
        source = path.read_text()
        imports = re.findall(r"^\s*(?:from|import)\s+(\S+)", source, flags=re.MULTILINE)
        assert all(m.split(".")[0] in ("torch", "transformers", "math") or m.startswith(".") for m in imports), path
        assert "CCAMProjector" not in source.replace("CCAMProjectorConfig", "") or path.name == "__init__.py"


def test_existing_replicas_are_kept(released_replicas, tmp_path, capsys):
    from tests.conftest import load_tool

    tool = load_tool("make_released_replicas")
    args = ["--out", str(tmp_path), "--base-models", str(released_replicas["base"])]
    assert tool.main(args) == 0
    first = (tmp_path / "v1_2/model.safetensors").read_bytes()
    assert tool.main(args) == 0
    assert "exists, kept" in capsys.readouterr().out
    assert (tmp_path / "v1_2/model.safetensors").read_bytes() == first
    assert (tmp_path / "v1_0/projector/model.safetensors").read_bytes() == \
        (released_replicas["v1_0"] / "projector/model.safetensors").read_bytes()  # deterministic
