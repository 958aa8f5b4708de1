"""videoccam/export/hf_model.py: the merged Hugging Face model computes what the training model computes."""

from __future__ import annotations

import warnings

import pytest
import torch

from tests.export.helpers import (
    KINDS,
    MAX_NEW_TOKENS,
    conversation,
    inference_ids,
    media_inputs,
    training_batch,
    training_greedy,
)


@pytest.mark.parametrize("kind", list(KINDS))
def test_round_trip_logits_and_greedy_tokens(loaded, trained, kind):
    model, tokenizer, image_processor = loaded
    items, pixel_values = media_inputs(kind, image_processor)
    ids = inference_ids(kind, tokenizer, model)
    with torch.no_grad():
        reference = trained.model(training_batch(ids, pixel_values), mode="tensor")
        num_frames = None if pixel_values is None else [pixel_values.shape[0]]
        logits = model(input_ids=torch.tensor([ids]), pixel_values=pixel_values, num_frames=num_frames).logits
    assert logits.shape == reference.shape
    if kind != "text":
        assert logits.shape[1] == len(ids) - 1 + trained.cfg.num_queries
    torch.testing.assert_close(logits, reference, atol=1e-4, rtol=0)

    eos = model.generation_config.eos_token_id
    expected = training_greedy(trained.model, ids, pixel_values, eos, MAX_NEW_TOKENS)
    generated = model.generate(
        input_ids=torch.tensor([ids]), pixel_values=pixel_values, num_frames=num_frames,
        max_new_tokens=MAX_NEW_TOKENS, do_sample=False,
    )[0].tolist()
    assert generated[: len(expected)] == expected
    assert all(t == model.generation_config.pad_token_id for t in generated[len(expected):])
    reply = model.chat([conversation(kind)], [items], tokenizer, image_processor, max_new_tokens=MAX_NEW_TOKENS)
    assert reply == [tokenizer.decode(expected, skip_special_tokens=True).strip()]


def test_adapters_matter(trained, loaded):
    """Guard against a vacuous round trip: without the trained LoRA / projector the logits differ."""
    model, tokenizer, image_processor = loaded
    _, pixel_values = media_inputs("video", image_processor)
    ids = inference_ids("video", tokenizer, model)
    with torch.no_grad():
        reference = trained.model(training_batch(ids, pixel_values), mode="tensor")
        with trained.model.llm.disable_adapter():
            no_llm_lora = trained.model(training_batch(ids, pixel_values), mode="tensor")
    assert (reference - no_llm_lora).abs().max() > 1e-2


def test_export_leaves_the_training_model_unchanged(trained):
    from videoccam.export.hf_model import build_hf_model
    from videoccam.export.tokenizer import prepare_tokenizer

    before = {k: v.clone() for k, v in trained.model.state_dict().items()}
    base = trained.model.llm.get_base_model().model.layers[0].self_attn.q_proj
    base_weight = base.base_layer.weight.clone()
    build_hf_model(trained.model, trained.template, prepare_tokenizer(trained.tokenizer, trained.template))
    assert not base.merged
    torch.testing.assert_close(base.base_layer.weight, base_weight, rtol=0, atol=0)
    for key, value in trained.model.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)


def test_huggingface_format_on_meta_weights_points_to_the_tool(trained, tmp_path):
    """`xtuner convert pth_to_hf --save-format huggingface` builds the model on the meta device: clear error."""
    from accelerate import init_empty_weights
    from xtuner.registry import BUILDER

    with init_empty_weights(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*non-meta.*", category=UserWarning)  # as pth_to_hf does
        meta_model = BUILDER.build(trained.cfg.model)
    with pytest.raises(ValueError, match="tools/convert_to_hf.py"):
        meta_model.to_hf(cfg=trained.cfg, save_dir=str(tmp_path / "out"), save_format="huggingface")
    assert not (tmp_path / "out" / "config.json").exists()
