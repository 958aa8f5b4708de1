"""videoccam/export/released_layout.py: the released layout keeps the release's tensor names and dtypes; the
round trips through fine-tuning are tested in tests/model/test_released.py."""

from __future__ import annotations

import shutil

import pytest
import torch
from mmengine.config import Config
from safetensors.torch import load_file, save_file
from xtuner.registry import BUILDER

from tests.conftest import RELEASED_CONFIGS, released_options
from videoccam.export.released_layout import released_tensors, save_released_layout


def _cfg(replicas, version, **changes):
    cfg = Config.fromfile(str(RELEASED_CONFIGS[version]))
    options = released_options(replicas, version)
    options.update(changes)
    cfg.merge_from_dict(options)
    return cfg


def test_dtypes_follow_the_release_unless_fp32(released_replicas, tmp_path):
    """A bf16 release (as the real ones are) is written back in bf16 (its projector trains in fp32)."""
    release = tmp_path / "bf16_release"
    shutil.copytree(released_replicas["v1_0"], release)
    weights = release / "projector/model.safetensors"
    save_file({k: v.to(torch.bfloat16) for k, v in load_file(weights).items()}, str(weights), {"format": "pt"})
    path = str(release)
    cfg = _cfg(released_replicas, "v1_0", **{"released_path": path, "model.llm.released_path": path,
                                             "model.visual_encoder.released_path": path,
                                             "model.projector.released_path": path})  # fmt: skip
    model = BUILDER.build(cfg.model)
    assert model.projector.query.dtype == torch.float32  # trains in fp32
    save_released_layout(model, cfg, tmp_path / "out")
    exported = load_file(tmp_path / "out/projector/model.safetensors")
    assert {t.dtype for t in exported.values()} == {torch.bfloat16}
    assert all(torch.equal(exported[k], v) for k, v in load_file(weights).items())  # untrained: the release
    save_released_layout(model, cfg, tmp_path / "out32", fp32=True)
    assert {t.dtype for t in released_tensors(tmp_path / "out32/projector").values()} == {torch.float32}


def test_errors(released_replicas, trained, tmp_path):
    cfg = _cfg(released_replicas, "v1_0")
    model = BUILDER.build(cfg.model)
    with pytest.raises(ValueError, match="is the released folder itself"):
        save_released_layout(model, cfg, released_replicas["v1_0"])
    other = _cfg(released_replicas, "v1_0", **{"model.projector.released_path": str(tmp_path)})
    with pytest.raises(ValueError, match="names several releases"):
        save_released_layout(model, other, tmp_path / "out")
    plain = Config.fromfile(str(RELEASED_CONFIGS["v1_0"]))
    for key in ("released_path",):
        plain.pop(key)
    for part in ("llm", "visual_encoder", "projector"):
        plain.model[part].pop("released_path")
    with pytest.raises(ValueError, match="the config has no released_path"):
        save_released_layout(model, plain, tmp_path / "out")
    # the release's tensor names must be the model's: a model with the project's own projector does not fit
    v12 = _cfg(released_replicas, "v1_2")
    with pytest.raises(ValueError, match=r"does not have the released tensor names: missing \['mm_projector"):
        save_released_layout(trained.model, v12, tmp_path / "out12")
