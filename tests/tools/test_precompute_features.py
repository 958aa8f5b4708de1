"""tools/precompute_features.py fills the cache (hits on a second run); tools/train.py --feature-cache wires it."""

from __future__ import annotations

from tests.conftest import ROOT, load_tool, tiny_cfg_options

STAGE1 = str(ROOT / "configs/tiny/videoccam_tiny_qwen2_stage1.py")
STAGE2 = str(ROOT / "configs/tiny/videoccam_tiny_qwen2_stage2.py")


def test_precompute_then_hits(tiny_models, synthetic_data, tmp_path, capsys):
    tool = load_tool("precompute_features")
    opts = ["--cfg-options", *tiny_cfg_options(tiny_models, synthetic_data, "captions.json")]
    cache = tmp_path / "cache"
    assert tool.main([STAGE1, "--cache-dir", str(cache), "--limit", "3", *opts]) == 0
    assert "0 cached, 3 computed" in capsys.readouterr().out
    assert tool.main([STAGE1, "--cache-dir", str(cache), "--limit", "3", *opts]) == 0
    assert "3 cached, 0 computed" in capsys.readouterr().out
    assert tool.main([STAGE2, "--cache-dir", str(cache), *opts]) == 2  # stage 2 trains SigLIP (LoRA)
    assert "frozen vision tower without LoRA" in capsys.readouterr().err


def test_train_feature_cache_option_dumps_the_config_with_the_cache(tiny_models, synthetic_data, tmp_path):
    from videoccam.config import load_config

    train = load_tool("train")
    opts = tiny_cfg_options(tiny_models, synthetic_data, "captions.json")
    argv = train.with_feature_cache([STAGE1, "--work-dir", "w", "--cfg-options", *opts, "--feature-cache",
                                     str(tmp_path / "cache")], str(tmp_path))  # fmt: skip
    assert argv[0] == str(tmp_path / "videoccam_tiny_qwen2_stage1.py") and argv[1:3] == ["--work-dir", "w"]
    cfg = load_config(argv[0])
    cache = cfg.train_dataloader.dataset.feature_cache
    assert cache["cache_dir"] == str(tmp_path / "cache")
    assert cache["visual_encoder"]["pretrained_model_name_or_path"] == str(tiny_models / "siglip")  # the override
