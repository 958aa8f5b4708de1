"""videoccam/synthetic/tiny_models.py: everything loads back offline, runs, and tokenizes as the real ones."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image
from transformers import (
    AutoImageProcessor,
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    SiglipImageProcessor,
    SiglipVisionModel,
)

from tests.conftest import load_tool
from videoccam.synthetic import shapes as synthetic
from videoccam.synthetic import tiny_models as tiny

# Tokens that must stay whole: the chat templates' markers and the media placeholders.
SPECIAL_TOKENS = {
    "qwen2": ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<image>", "<video>"],
    "phi3": ["<s>", "<|user|>", "<|assistant|>", "<|end|>", "<|endoftext|>", "<image>", "<video>"],
}
PROMPT = [{"role": "user", "content": "<video>\nWhich shape appears first?"}]
EXPECTED_PROMPT = {
    "qwen2": "<|im_start|>user\n<video>\nWhich shape appears first?<|im_end|>\n<|im_start|>assistant\n",
    "phi3": "<|user|>\n<video>\nWhich shape appears first?<|end|>\n<|assistant|>\n",
}


@pytest.fixture(scope="module")
def models(tiny_models) -> Path:
    """tests/conftest.py's session fixture: ``tools/make_tiny_models.py --out <tmp>`` returned 0."""
    return tiny_models


def test_layout(models):
    assert sorted(p.name for p in models.iterdir()) == ["phi3", "qwen2", "siglip"]
    for name in ("qwen2", "phi3"):
        files = {p.name for p in (models / name).iterdir()}
        assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json",
                "tokenizer_config.json"} <= files  # fmt: skip
    assert {"config.json", "model.safetensors", "preprocessor_config.json"} <= {
        p.name for p in (models / "siglip").iterdir()
    }


def test_siglip_loads_and_runs(models):
    model = SiglipVisionModel.from_pretrained(models / "siglip")
    processor = AutoImageProcessor.from_pretrained(models / "siglip")
    assert isinstance(processor, SiglipImageProcessor)
    assert SiglipImageProcessor.from_pretrained(models / "siglip").size == {"height": 64, "width": 64}
    assert processor.image_mean == [0.5, 0.5, 0.5] and processor.image_std == [0.5, 0.5, 0.5]
    pixels = processor(images=[Image.new("RGB", (100, 80), (255, 0, 0))] * 3, return_tensors="pt").pixel_values
    assert pixels.shape == (3, 3, 64, 64)
    with torch.no_grad():
        hidden = model(pixels, output_hidden_states=True).hidden_states
    assert len(hidden) == 3 and hidden[-2].shape == (3, 16, 32)  # 4 x 4 patches, no CLS token


@pytest.mark.parametrize(
    ("name", "tokenizer_class", "model_class"),
    [("qwen2", "Qwen2TokenizerFast", "Qwen2ForCausalLM"), ("phi3", "LlamaTokenizerFast", "Phi3ForCausalLM")],
)
def test_llm_loads_and_runs(models, name, tokenizer_class, model_class):
    tokenizer = AutoTokenizer.from_pretrained(models / name)
    model = AutoModelForCausalLM.from_pretrained(models / name)
    # xtuner's get_bos_eos_token_ids branches on the tokenizer class name.
    assert type(tokenizer).__name__ == tokenizer_class and type(model).__name__ == model_class
    assert model.config.vocab_size == len(tokenizer)
    assert 500 <= len(tokenizer) <= 1000
    config = model.config
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads, config.num_key_value_heads) == (
        64, 2, 4, 2,
    )  # fmt: skip
    assert not config.tie_word_embeddings
    ids = tokenizer.apply_chat_template(PROMPT, add_generation_prompt=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(ids).logits
    assert logits.shape == (1, ids.shape[1], len(tokenizer)) and torch.isfinite(logits).all()
    out = model.generate(ids, max_new_tokens=3, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert out.shape[1] <= ids.shape[1] + 3


def test_special_tokens_and_generation_config(models):
    qwen = AutoTokenizer.from_pretrained(models / "qwen2")
    assert (qwen.bos_token, qwen.eos_token, qwen.pad_token) == (None, "<|im_end|>", "<|endoftext|>")
    phi = AutoTokenizer.from_pretrained(models / "phi3")
    assert (phi.bos_token, phi.eos_token, phi.pad_token) == ("<s>", "<|end|>", "<|endoftext|>")
    for name, tokenizer, stops in (("qwen2", qwen, ["<|im_end|>", "<|endoftext|>"]),
                                   ("phi3", phi, ["<|end|>", "<|endoftext|>"])):  # fmt: skip
        generation = GenerationConfig.from_pretrained(models / name)
        assert generation.eos_token_id == tokenizer.convert_tokens_to_ids(stops)
        assert generation.pad_token_id == tokenizer.pad_token_id
        assert set(SPECIAL_TOKENS[name]) <= set(tokenizer.all_special_tokens)


@pytest.mark.parametrize("name", ["qwen2", "phi3"])
def test_chat_template_tokens_are_single_tokens(models, name):
    tokenizer = AutoTokenizer.from_pretrained(models / name)
    text = tokenizer.apply_chat_template(PROMPT, tokenize=False, add_generation_prompt=True)
    assert text == EXPECTED_PROMPT[name]
    for token in SPECIAL_TOKENS[name]:
        ids = tokenizer(f"a{token}b", add_special_tokens=False).input_ids
        assert tokenizer.convert_tokens_to_ids(token) in ids and len(ids) == 3, (token, ids)
        assert tokenizer.decode(ids) == f"a{token}b"
    ids = tokenizer(text, add_special_tokens=False).input_ids
    assert tokenizer.decode(ids) == text  # lossless round trip


def test_bos_like_the_real_tokenizers(models):
    phi = AutoTokenizer.from_pretrained(models / "phi3")
    assert phi("The red square.").input_ids[0] == phi.bos_token_id
    qwen = AutoTokenizer.from_pretrained(models / "qwen2")  # Qwen: no bos, nothing prepended
    assert qwen("The red square.").input_ids == qwen("The red square.", add_special_tokens=False).input_ids


@pytest.mark.parametrize("name", ["qwen2", "phi3"])
def test_tokenizer_is_compact_on_the_synthetic_vocabulary(models, name):
    tokenizer = AutoTokenizer.from_pretrained(models / name)
    for word in synthetic.WORDS:
        assert len(tokenizer.tokenize(" " + word)) <= 2, word
    sentence = "Which shape appears first? The red square. A green circle appears, then a blue triangle."
    assert len(tokenizer.tokenize(sentence)) <= 20
    # Text outside the training corpus still round-trips (byte-level BPE has no unknown token).
    odd = "Zebra über 42 ✓ 日本"
    assert tokenizer.decode(tokenizer(odd, add_special_tokens=False).input_ids) == odd


def test_existing_models_are_kept_and_rebuilds_are_identical(models, tmp_path, capsys):
    stamp = (models / "qwen2" / "model.safetensors").stat().st_mtime_ns
    assert load_tool("make_tiny_models").main(["--out", str(models)]) == 0
    assert "exists, kept" in capsys.readouterr().out
    assert (models / "qwen2" / "model.safetensors").stat().st_mtime_ns == stamp
    tiny.make_tiny_models(tmp_path, force=True, pretrain_steps=0, vision_pretrain_steps=0)  # as the fixture
    for name in ("siglip/model.safetensors", "qwen2/model.safetensors", "qwen2/tokenizer.json",
                 "phi3/model.safetensors", "phi3/tokenizer.json"):  # fmt: skip
        assert (tmp_path / name).read_bytes() == (models / name).read_bytes(), name


def test_a_subset_of_the_models(tmp_path):
    from videoccam.synthetic.tiny_models import make_tiny_models

    folders = make_tiny_models(tmp_path, vision_pretrain_steps=0, names=("siglip",))
    assert list(folders) == ["siglip"] and sorted(p.name for p in tmp_path.iterdir()) == ["siglip"]
    with pytest.raises(ValueError, match=r"unknown tiny models \['llama'\]"):
        make_tiny_models(tmp_path, names=("llama",))


def test_chat_corpus_holds_reading_exercises():
    """Most (90%) of the tiny LLMs' pretraining conversations are answered from a description in the prompt."""
    from videoccam.synthetic.tiny_models import chat_corpus

    corpus = chat_corpus(num_conversations=400, seed=1)
    assert len(corpus) == 400 and all([t["role"] for t in c] == ["user", "assistant"] for c in corpus)
    with_context = [c for c in corpus if "\n" in c[0]["content"]]
    assert 340 < len(with_context) < 380
    assert any(c[1]["content"] in ("Red.", "Green.", "Blue.", "Yellow.") for c in with_context)
    assert chat_corpus(num_conversations=50, seed=1) == corpus[:50]


def test_shape_frames_label_what_each_frame_and_patch_shows():
    import random

    frames = tiny.shape_frames(random.Random(0), 200, 64, 16)
    assert frames.pixels.shape == (200, 3, 64, 64) and frames.patch_color.shape == (200, 16)
    assert frames.pixels.dtype == torch.uint8
    assert float(tiny.normalized(frames.pixels).min()) >= -1.0 and float(tiny.normalized(frames.pixels).max()) <= 1.0
    blank = frames.color == 0
    assert 5 <= int(blank.sum()) <= 40  # one frame in ten shows nothing
    assert bool((frames.shape[blank] == 0).all()) and bool((frames.patch_color[blank] == 0).all())
    rgb = list(synthetic.COLORS.values())
    patches = frames.pixels.float().reshape(200, 3, 4, 16, 4, 16).permute(0, 2, 4, 1, 3, 5).reshape(200, 16, 3, 256)
    for i in torch.nonzero(~blank).flatten()[:50].tolist():
        c, k = int(frames.color[i]), int(frames.shape[i])
        shown = frames.patch_color[i] > 0
        assert 2 <= int(shown.sum()) <= 9  # a shape of half-size 16 px covers 2 x 2 to 3 x 3 patches of 16 px
        assert set(frames.patch_color[i][shown].tolist()) == {c} and set(frames.patch_shape[i][shown].tolist()) == {k}
        # the labelled patches are mostly that colour, the others mostly background
        colour = torch.tensor(rgb[c - 1], dtype=torch.float32)[:, None]
        near = ((patches[i] - colour).abs().sum(1) < 30).float().mean(-1)  # [16] share of pixels of that colour
        assert float(near[shown].min()) > 0.25 and float(near[~shown].max()) <= 0.25


def _shape_probe(model, seed: int = 5) -> float:
    """Held-out accuracy of a linear probe of a frame's shape from its mean ``hidden_states[-2]`` feature."""
    import random

    frames = tiny.shape_frames(random.Random(seed), 1200, 64, 16)
    with torch.no_grad():
        features = model(pixel_values=tiny.normalized(frames.pixels), output_hidden_states=True).hidden_states[-2]
    features = features.mean(1)
    features = (features - features[:800].mean(0)) / (features[:800].std(0) + 1e-6)
    torch.manual_seed(0)
    probe = torch.nn.Linear(features.shape[1], 4)
    optimizer = torch.optim.Adam(probe.parameters(), lr=1e-2)
    for _ in range(300):
        loss = torch.nn.functional.cross_entropy(probe(features[:800]), frames.shape[:800])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return float((probe(features[800:]).argmax(-1) == frames.shape[800:]).float().mean())


def test_pretrained_siglip_tells_shapes_apart():
    """The random tiny SigLIP's features barely tell a square from a circle; after pretraining they do."""
    from transformers import SiglipVisionConfig

    torch.manual_seed(0)
    model = SiglipVisionModel(SiglipVisionConfig(**tiny.SIGLIP_CONFIG)).eval()
    before = _shape_probe(model)
    losses = tiny.pretrain_siglip(model, tiny.VISION_PRETRAIN_STEPS)
    after = _shape_probe(model)
    assert sum(losses[-10:]) / 10 < 0.25 * losses[0]
    assert before < 0.9 and after > 0.95, (before, after)
    assert torch.get_num_threads() > 0  # the one-thread block restored the setting


def _answer_loss(model, tokenizer, context: str, question: str, answer: str) -> float:
    """Loss (nats) of the first answer token after a chat turn that opens with ``context``."""
    conversation = [{"role": "user", "content": f"{context}\n{question}"}, {"role": "assistant", "content": answer}]
    ids = tokenizer(tokenizer.apply_chat_template(conversation, tokenize=False), return_tensors="pt").input_ids
    prompt = tokenizer.apply_chat_template(conversation[:1], tokenize=False, add_generation_prompt=True)
    start = len(tokenizer(prompt).input_ids)
    with torch.no_grad():
        log_probs = torch.log_softmax(model(ids).logits[0, start - 1], -1)
    return -float(log_probs[ids[0, start]])


@pytest.mark.slow
def test_pretrained_llm_reads_colours_and_shapes_from_its_context(tmp_path):
    """The default tiny Qwen2 answers from the description in its prompt: with the right description the answer's
    loss is far below its loss with another video's description, for the colour and the shape questions."""
    import random

    folder = tiny.make_tiny_models(tmp_path, names=("qwen2",))["qwen2"]
    model, tokenizer = AutoModelForCausalLM.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)
    rng = random.Random(3)
    losses: dict[tuple[str, str], list[float]] = {}
    for _ in range(40):
        count = rng.randint(synthetic.MIN_SHAPES, synthetic.MAX_SHAPES)
        own, other = ([f"{c} {rng.choice(synthetic.SHAPES)}" for c in rng.sample(list(synthetic.COLORS), count)]
                      for _ in range(2))  # fmt: skip
        for task in synthetic.CONTENT_CHANCE:
            question, answer = synthetic.video_qa(own, task)
            for which, names in (("own", own), ("other", other)):
                loss = _answer_loss(model, tokenizer, synthetic.describe_sequence(names), question, answer)
                losses.setdefault((task, which), []).append(loss)
    mean = {key: sum(values) / len(values) for key, values in losses.items()}
    for task in synthetic.CONTENT_CHANCE:
        assert mean[task, "own"] < 0.5 * mean[task, "other"], mean
