"""videoccam/model/hf/modeling_videoccam.py: the placeholder id is the config's everywhere (splice, forward,
generate, chat); the splicing and the frame encoding shared with training are tested in
tests/model/test_videoccam_model.py."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import AutoTokenizer

from videoccam.model.hf.configuration_videoccam import VideoCCAMConfig
from videoccam.model.hf.constants import IMAGE_TOKEN_INDEX
from videoccam.model.hf.modeling_videoccam import VideoCCAMForCausalLM, splice_media_embeds, tokenize_with_media

OTHER_INDEX = -300  # a placeholder id other than xtuner's


@pytest.fixture(scope="module")
def models(tiny_models):
    """The same random weights under the default placeholder id and under OTHER_INDEX, with the tiny tokenizer."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_models / "qwen2")
    tokenizer.padding_side = "left"
    config = VideoCCAMConfig(
        text_config=dict(model_type="qwen2", hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, vocab_size=len(tokenizer)),
        vision_config=dict(model_type="siglip_vision_model", hidden_size=16, intermediate_size=32,
                           num_hidden_layers=2, num_attention_heads=2, image_size=64, patch_size=16),
        projector_config=dict(num_queries=4, hidden_size=16, num_heads=2, intermediate_size=32,
                              cross_hidden_size=16, output_size=32),
    )
    torch.manual_seed(0)
    default = VideoCCAMForCausalLM(config).eval()
    other = VideoCCAMForCausalLM(VideoCCAMConfig(**{**config.to_dict(), "image_token_index": OTHER_INDEX})).eval()
    other.load_state_dict(default.state_dict())
    for model in (default, other):
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.generation_config.eos_token_id = tokenizer.eos_token_id
    return default, other, tokenizer


def test_forward_and_generate_use_the_configs_placeholder(models):
    default, other, _ = models
    assert other.config.image_token_index == OTHER_INDEX != IMAGE_TOKEN_INDEX
    pixel_values = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    ids = [5, 6, 7]
    with torch.no_grad():
        a = default(input_ids=torch.tensor([ids[:1] + [IMAGE_TOKEN_INDEX] + ids[1:]]), pixel_values=pixel_values,
                    num_frames=[3]).logits
        b = other(input_ids=torch.tensor([ids[:1] + [OTHER_INDEX] + ids[1:]]), pixel_values=pixel_values,
                  num_frames=[3]).logits
    assert a.shape[1] == len(ids) + 4  # the placeholder became num_queries visual tokens
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    kwargs = dict(pixel_values=pixel_values, num_frames=[3], max_new_tokens=3, do_sample=False)
    assert torch.equal(default.generate(input_ids=torch.tensor([[5, IMAGE_TOKEN_INDEX, 6]]), **kwargs),
                       other.generate(input_ids=torch.tensor([[5, OTHER_INDEX, 6]]), **kwargs))


def test_chat_uses_the_configs_placeholder(models):
    default, other, tokenizer = models
    frames = [torch.rand(3, 64, 64) for _ in range(2)]

    class Processor:  # frames are already tensors here
        def __call__(self, images, return_tensors="pt"):
            return {"pixel_values": torch.stack(images)}

    messages = [[{"role": "user", "content": "<video>\nWhich shape appears first?"}]]
    text = tokenizer.apply_chat_template(messages[0], tokenize=False, add_generation_prompt=True)
    assert OTHER_INDEX in tokenize_with_media(text, tokenizer, other.config.media_tokens, OTHER_INDEX)
    replies = [m.chat(messages, [frames], tokenizer, Processor(), max_new_tokens=3) for m in (default, other)]
    assert replies[0] == replies[1]


def test_splice_with_another_placeholder_id():
    embed = torch.nn.Embedding(10, 2)
    media = torch.full((1, 3, 2), 7.0)
    out = splice_media_embeds(embed, torch.tensor([[1, OTHER_INDEX, 2]]), media, image_token_index=OTHER_INDEX)
    torch.testing.assert_close(out["inputs_embeds"][0, 1:4], media[0])
    with pytest.raises(ValueError, match="0 media placeholders"):
        splice_media_embeds(embed, torch.tensor([[1, 2]]), copy.deepcopy(media), image_token_index=OTHER_INDEX)
