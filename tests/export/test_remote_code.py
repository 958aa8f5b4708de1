"""videoccam/export/remote_code.py: a projector with its own code travels with its files and an auto_map to them."""

from __future__ import annotations

import json

import pytest
import torch

from videoccam.export.remote_code import code_files, copy_code, has_own_code, own_auto_map, write_auto_map
from videoccam.model.hf.ccam_projector import CCAMProjector, CCAMProjectorConfig


def test_own_code_of_a_released_projector(released_replicas, tmp_path):
    from transformers import AutoModel

    projector = AutoModel.from_pretrained(released_replicas["v1_0"] / "projector", trust_remote_code=True)
    assert has_own_code(projector)
    assert not has_own_code(CCAMProjector(CCAMProjectorConfig(num_queries=4, hidden_size=8, num_heads=2,
                                                               intermediate_size=8, cross_hidden_size=8,
                                                               output_size=8)))  # fmt: skip
    assert own_auto_map(projector) == {"AutoConfig": "configuration_ccam_projector.CCAMConfig",
                                       "AutoModel": "modeling_ccam_projector.CCAMModel"}  # fmt: skip
    assert sorted(p.name for p in code_files(projector)) == ["configuration_ccam_projector.py",
                                                              "modeling_ccam_projector.py"]  # fmt: skip
    written = copy_code(projector, tmp_path)
    assert sorted(p.name for p in written) == sorted(p.name for p in code_files(projector))
    (tmp_path / "config.json").write_text(json.dumps({"auto_map": {"AutoModel": "JaronTHU/x--modeling.X"}}))
    write_auto_map(tmp_path / "config.json", own_auto_map(projector))
    projector.save_pretrained(tmp_path / "saved")
    # a folder that already holds another file of the same name: refused
    (tmp_path / "modeling_ccam_projector.py").write_text("# something else\n")
    with pytest.raises(ValueError, match="would replace a different"):
        copy_code(projector, tmp_path)
