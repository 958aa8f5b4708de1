"""Long videos streamed through SigLIP and the projector equal the usual path; only the selected layer is kept."""

from __future__ import annotations

import pytest
import torch
from transformers import SiglipVisionConfig, SiglipVisionModel

from videoccam.model.hf.ccam_projector import CCAMProjector, CCAMProjectorConfig
from videoccam.model.hf.modeling_videoccam import encode_frames
from videoccam.model.long_video import encode_long_video, select_layer_features


@pytest.fixture(scope="module")
def vision():
    torch.manual_seed(0)
    config = SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2,
                                image_size=28, patch_size=14)  # fmt: skip
    return SiglipVisionModel(config).eval()


@pytest.mark.parametrize("layer", [-1, -2, -4, 0, 2])
def test_select_layer_features_is_that_hidden_state(vision, layer):
    x = torch.randn(3, 3, 28, 28)
    with torch.no_grad():
        expected = vision(x, output_hidden_states=True).hidden_states[layer]
        torch.testing.assert_close(select_layer_features(vision, x, layer), expected, rtol=0, atol=0)


@pytest.mark.parametrize("depth", [1, 2])
def test_streamed_video_equals_the_usual_path(vision, depth):
    torch.manual_seed(1)
    projector = CCAMProjector(CCAMProjectorConfig(num_queries=12, hidden_size=16, num_heads=2, cross_hidden_size=32,
                                                  intermediate_size=32, output_size=10, depth=depth)).eval()  # fmt: skip
    frames = torch.randn(7, 3, 28, 28)
    with torch.no_grad():
        expected = projector(encode_frames(vision, frames, -2, 7), [7])
    streamed = encode_long_video(vision, projector, lambda: frames.split(3), 7)
    assert not streamed.requires_grad
    torch.testing.assert_close(streamed, expected, rtol=1e-5, atol=1e-6)
