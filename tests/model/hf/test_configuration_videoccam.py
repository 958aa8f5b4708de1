"""videoccam/model/hf/configuration_videoccam.py: nested configs, serialisation, validation."""

from __future__ import annotations

import pytest

from videoccam.model.hf.ccam_projector import CCAMProjectorConfig
from videoccam.model.hf.configuration_videoccam import VideoCCAMConfig

TEXT = dict(model_type="qwen2", hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
            num_key_value_heads=1, vocab_size=50)
VISION = dict(model_type="siglip_vision_model", hidden_size=16, intermediate_size=32, num_hidden_layers=2,
              num_attention_heads=2, image_size=32, patch_size=16)
PROJECTOR = dict(num_queries=4, hidden_size=16, num_heads=2, intermediate_size=32, cross_hidden_size=16,
                 output_size=32, mask_mode="ceil")


def test_round_trip_through_save_pretrained(tmp_path):
    config = VideoCCAMConfig(text_config=TEXT, vision_config=VISION, projector_config=PROJECTOR,
                             vision_chunk_size=3, image_token_index=-300, media_tokens=["<img>"])
    assert isinstance(config.projector_config, CCAMProjectorConfig) and config.projector_config.mask_mode == "ceil"
    assert config.text_config.model_type == "qwen2" and config.vision_config.model_type == "siglip_vision_model"
    config.save_pretrained(tmp_path)
    again = VideoCCAMConfig.from_pretrained(tmp_path)
    assert again.to_dict()["projector_config"] == config.to_dict()["projector_config"]
    assert (again.image_token_index, again.media_tokens, again.vision_chunk_size) == (-300, ["<img>"], 3)
    assert again.text_config.hidden_size == 32 and again.vision_config.patch_size == 16
    assert again.tie_word_embeddings is False


def test_invalid_values_are_refused():
    with pytest.raises(ValueError, match="vision_chunk_size must be >= 1"):
        VideoCCAMConfig(vision_chunk_size=0)
    with pytest.raises(ValueError, match="unknown sub-model type 'nope'"):
        VideoCCAMConfig(text_config=dict(model_type="nope"))
