"""videoccam/config.py: loading a config with --cfg-options, and finding its template, tokenizer and image processor."""

from __future__ import annotations

import pytest
from xtuner.utils import PROMPT_TEMPLATE

from tests.conftest import ROOT
from videoccam.config import (
    build_from_cfg,
    build_image_processor,
    build_tokenizer,
    load_config,
    resolve_template,
    template_from_cfg,
)

STAGE1 = ROOT / "configs/tiny/videoccam_tiny_qwen2_stage1.py"


def test_resolve_template_accepts_names_mappings_and_dumped_import_paths():
    # a config dumped by mmengine stores the template as its import path
    assert resolve_template("xtuner.utils.PROMPT_TEMPLATE.qwen_chat") == resolve_template("qwen_chat")
    with pytest.raises(ValueError, match="unknown prompt template"):
        resolve_template("no_such_template")
    assert resolve_template(PROMPT_TEMPLATE.qwen_chat) is PROMPT_TEMPLATE.qwen_chat
    with pytest.raises(ValueError, match="a name or a mapping"):
        resolve_template(3)


def test_load_config_merges_options_and_finds_what_it_trains_with(tiny_models):
    llm = str(tiny_models / "qwen2")
    cfg = load_config(STAGE1, {"tokenizer.pretrained_model_name_or_path": llm,
                               "image_processor.pretrained_model_name_or_path": str(tiny_models / "siglip")})
    assert cfg.tokenizer.pretrained_model_name_or_path == llm
    assert template_from_cfg(cfg) == PROMPT_TEMPLATE.qwen_chat
    assert build_tokenizer(cfg).name_or_path == llm
    assert build_image_processor(cfg).size == {"height": 64, "width": 64}
    # the train dataset's entries are the fallback when the top-level ones are absent
    dataset = dict(cfg.train_dataloader.dataset, tokenizer=dict(cfg.tokenizer))
    assert template_from_cfg({"train_dataloader": {"dataset": dataset}}) == PROMPT_TEMPLATE.qwen_chat
    assert build_tokenizer({"train_dataloader": {"dataset": dataset}}).name_or_path == llm
    with pytest.raises(ValueError, match="neither `prompt_template` nor"):
        template_from_cfg({"train_dataloader": {"dataset": {}}})
    with pytest.raises(FileNotFoundError, match="config not found"):
        load_config(ROOT / "configs/no_such_config.py")


def test_build_from_cfg_builds_dicts_only():
    assert build_from_cfg(dict(type=dict, a=1)) == {"a": 1}
    marker = object()
    assert build_from_cfg(marker) is marker
