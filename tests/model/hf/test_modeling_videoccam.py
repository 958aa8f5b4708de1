"""videoccam/model/hf/modeling_videoccam.py: the placeholder id is the config's everywhere (splice, forward,
generate, chat); the upstream v1.2 API (``vision_encoder``, ``generate(input_ids=[ids], pixel_values,
vision_split_sizes, past_key_values)`` -> ``(new_ids, past_key_values)`` for multi-turn chat, several media per
message and per conversation); the splicing and the frame encoding shared with training are tested in
tests/model/test_videoccam_model.py."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import AutoTokenizer, DynamicCache

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
    config.image_token_id, config.video_token_id = tokenizer.convert_tokens_to_ids(["<image>", "<video>"])
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


class TensorProcessor:
    """An image processor for frames that are already [3, h, w] tensors."""

    def __call__(self, images, return_tensors="pt"):
        return {"pixel_values": torch.stack(list(images))}


def _pixels(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


GREEDY = dict(max_new_tokens=4, do_sample=False)
Q = 4  # num_queries of the fixture's projector


def test_vision_encoder_is_the_visual_encoder(models):
    model = models[0]
    assert model.vision_encoder is model.visual_encoder
    weight = model.vision_encoder.get_input_embeddings().weight  # what upstream's web demo reads
    assert weight.dtype == torch.float32
    assert not any(name.startswith("vision_encoder.") for name in model.state_dict())  # one name for the weights


def test_tokenizer_media_ids_are_placeholders(models):
    model, _, tokenizer = models
    image_id, video_id = tokenizer.convert_tokens_to_ids(["<image>", "<video>"])
    pixel_values = _pixels(5, 2)
    with torch.no_grad():
        ours = model(input_ids=torch.tensor([[5, IMAGE_TOKEN_INDEX, 6, IMAGE_TOKEN_INDEX, 7]]),
                     pixel_values=pixel_values, num_frames=[3, 2]).logits
        theirs = model(input_ids=torch.tensor([[5, image_id, 6, video_id, 7]]), pixel_values=pixel_values,
                       vision_split_sizes=[3, 2]).logits
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


def test_several_media_per_message_in_order(models):
    model, _, _ = models
    pixel_values = _pixels(5, 3)
    ids = torch.tensor([[5, IMAGE_TOKEN_INDEX, 6, IMAGE_TOKEN_INDEX, 7]])
    with torch.no_grad():
        logits = model(input_ids=ids, pixel_values=pixel_values, vision_split_sizes=[3, 2]).logits
        first, second = model.encode_media(pixel_values[:3], [3])[0], model.encode_media(pixel_values[3:], [2])[0]
        embed = model.get_input_embeddings()
        text = embed(torch.tensor([5, 6, 7]))
        manual = torch.cat([text[:1], first, text[1:2], second, text[2:]])[None]
        reference = model.llm(inputs_embeds=manual).logits
        swapped = model(input_ids=ids, pixel_values=torch.cat([pixel_values[3:], pixel_values[:3]]),
                        vision_split_sizes=[2, 3]).logits
    assert logits.shape[1] == 3 + 2 * Q
    torch.testing.assert_close(logits, reference, atol=1e-5, rtol=0)
    assert not torch.allclose(logits, swapped, atol=1e-3)  # each placeholder takes its own item
    with pytest.raises(ValueError, match="2 media placeholders in input_ids but 1 media items"):
        model(input_ids=ids, pixel_values=pixel_values[:3], vision_split_sizes=[3])
    with pytest.raises(ValueError, match="differ"):
        model(input_ids=ids, pixel_values=pixel_values, num_frames=[3, 2], vision_split_sizes=[2, 3])


def test_upstream_generate_continues_a_conversation_from_the_cache(models):
    """Two turns through the cache give the reply a cache-less generation of the whole conversation gives."""
    model, _, tokenizer = models
    image_id = tokenizer.convert_tokens_to_ids("<image>")
    pixel_values = _pixels(3, 4)
    turn1 = [5, image_id, 6, 7]
    new1, cache = model.generate(input_ids=[turn1], pixel_values=pixel_values, vision_split_sizes=[3],
                                 past_key_values=DynamicCache(), **GREEDY)  # fmt: skip
    assert new1.dim() == 1 and len(new1) == 4
    assert cache.get_seq_length() == len(turn1) - 1 + Q + len(new1)  # prompt, media, and the whole reply
    # the first turn is what the tensor form generates
    tensor_form = model.generate(input_ids=torch.tensor([[5, IMAGE_TOKEN_INDEX, 6, 7]]), pixel_values=pixel_values,
                                 num_frames=[3], **GREEDY)[0]  # fmt: skip
    assert torch.equal(new1, tensor_form)

    turn2 = [8, 9, 10]
    new2, same_cache = model.generate(input_ids=[turn2], pixel_values=None, vision_split_sizes=[],
                                      past_key_values=cache, **GREEDY)  # fmt: skip
    assert same_cache is cache
    assert cache.get_seq_length() == len(turn1) - 1 + Q + len(new1) + len(turn2) + len(new2)
    whole = [5, IMAGE_TOKEN_INDEX, 6, 7, *new1.tolist(), *turn2]
    reference = model.generate(input_ids=torch.tensor([whole]), pixel_values=pixel_values, num_frames=[3], **GREEDY)
    assert torch.equal(new2, reference[0])

    # a third turn with two media items, still from the cache
    new3, cache = model.generate(input_ids=[[11, image_id, image_id, 12]], pixel_values=_pixels(5, 5),
                                 vision_split_sizes=[2, 3], past_key_values=cache, **GREEDY)  # fmt: skip
    assert cache.get_seq_length() == len(whole) - 1 + Q + len(new2) + 4 - 2 + 2 * Q + len(new3)


def test_upstream_generate_batches_beams_and_errors(models):
    model, _, tokenizer = models
    image_id = tokenizer.convert_tokens_to_ids("<image>")
    pixel_values = _pixels(4, 6)
    batch, none = model.generate(input_ids=[[5, image_id, 6], [7, 8, image_id, 9]], pixel_values=pixel_values,
                                 vision_split_sizes=[3, 1], **GREEDY)  # fmt: skip
    assert none is None and batch.shape == (2, 4)
    for i, (ids, frames) in enumerate((([5, image_id, 6], slice(0, 3)), ([7, 8, image_id, 9], slice(3, 4)))):
        alone, _ = model.generate(input_ids=[ids], pixel_values=pixel_values[frames],
                                  vision_split_sizes=[frames.stop - frames.start], **GREEDY)  # fmt: skip
        assert torch.equal(batch[i], alone)
    # beam search fills the caller's cache with the conversation, but cannot continue one
    new, cache = model.generate(input_ids=[[5, image_id, 6]], pixel_values=pixel_values[:3], vision_split_sizes=[3],
                                past_key_values=DynamicCache(), num_beams=2, **GREEDY)  # fmt: skip
    assert cache.get_seq_length() == 2 + Q + len(new)
    with pytest.raises(ValueError, match="beam search"):
        model.generate(input_ids=[[7]], past_key_values=cache, num_beams=2, **GREEDY)
    with pytest.raises(ValueError, match="a cache holds one conversation"):
        model.generate(input_ids=[[7], [8]], past_key_values=cache, **GREEDY)
    with pytest.raises(ValueError, match="ends with an <image>/<video> placeholder"):
        model.generate(input_ids=[[5, image_id]], pixel_values=pixel_values[:1], vision_split_sizes=[1], **GREEDY)
    with pytest.raises(ValueError, match="pass input_ids as a list"):
        model.generate(input_ids=torch.tensor([[5, 6]]), past_key_values=cache, **GREEDY)


def test_chat_with_several_media_per_conversation(models):
    model, _, tokenizer = models
    image, video, other = [torch.rand(3, 64, 64)], [torch.rand(3, 64, 64) for _ in range(3)], [torch.rand(3, 64, 64)]
    question = [{"role": "user", "content": "<image>\n<video>\nWhat differs?"}]
    replies = model.chat([question], [[image, video]], tokenizer, TensorProcessor(), **GREEDY)
    # what upstream's demo sends: the tokenizer's own ids and all frames of the message with their split sizes
    ids = tokenizer.apply_chat_template(question, tokenize=True, add_generation_prompt=True)
    new, _ = model.generate(input_ids=[ids], pixel_values=torch.stack(image + video), vision_split_sizes=[1, 3],
                            pad_token_id=tokenizer.pad_token_id, **GREEDY)  # fmt: skip
    assert replies == [tokenizer.decode(new, skip_special_tokens=True).strip()]
    # the same conversation in a batch with a one-video conversation, and with precomputed embeddings
    single = [{"role": "user", "content": "<video>\nWhat happens?"}]
    batch = model.chat([single, question], [video, [image, video]], tokenizer, TensorProcessor(), **GREEDY)
    assert batch[1] == replies[0]
    embeds = [model.encode_media(torch.stack(image), [1])[0], model.encode_media(torch.stack(video), [3])[0]]
    assert model.chat([question], None, tokenizer, media_embeds=[embeds], **GREEDY) == replies
    # several images: a flat list of one frame per placeholder, or bare images
    two = [{"role": "user", "content": "<image>\n<image>\nSame?"}]
    flat = model.chat([two], [image + other], tokenizer, TensorProcessor(), **GREEDY)
    assert flat == model.chat([two], [[image, other]], tokenizer, TensorProcessor(), **GREEDY)
    assert flat == model.chat([two], [[image[0], other[0]]], tokenizer, TensorProcessor(), **GREEDY)
    with pytest.raises(ValueError, match="2 media placeholders and a flat list of 3 frames"):
        model.chat([two], [video], tokenizer, TensorProcessor(), **GREEDY)
    with pytest.raises(ValueError, match="2 media placeholders .* but 1 media item"):
        model.chat([question], [[video]], tokenizer, TensorProcessor(), **GREEDY)
