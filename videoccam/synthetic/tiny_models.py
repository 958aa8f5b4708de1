"""Tiny stand-ins for SigLIP, Qwen2 and Phi-3 (with tokenizers) for tests and the quickstart.

Nothing is downloaded: the tokenizers are byte-level BPEs trained here on the synthetic data's sentences
(:func:`videoccam.synthetic.shapes.tokenizer_corpus`) plus some generic English and the benchmark prompt phrases,
and the models are built from configs with seeded random weights, then briefly pretrained on synthetic data
(what a real SigLIP and a real LLM bring: seeing shapes, reading a context).

Output of :func:`make_tiny_models` (``tools/make_tiny_models.py --out DIR``, every folder written with
``save_pretrained``)::

    DIR/siglip/  SiglipVisionModel (hidden 32, 2 layers, 2 heads, 64x64 images, patch 16 -> 16 tokens per
                 frame, no CLS token), pretrained to tell each patch's colour and shape on frames of the
                 synthetic videos' shapes (:func:`pretrain_siglip`) + SiglipImageProcessor (64x64, mean = std = 0.5)
    DIR/qwen2/   Qwen2ForCausalLM (hidden 64, 2 layers, 4 heads / 2 KV heads) + Qwen2TokenizerFast
                 (ChatML chat template; eos <|im_end|>, pad <|endoftext|>, no bos)
    DIR/phi3/    Phi3ForCausalLM (same sizes) + LlamaTokenizerFast (Phi-3 chat template; bos <s>,
                 eos <|end|>, pad <|endoftext|>)

Both tokenizers hold ``<image>`` and ``<video>`` as special tokens. The LLMs' vocab size is the tokenizer's
length; each LLM is pretrained to read its context (:func:`pretrain_llm`). Each folder loads offline with
``AutoModelForCausalLM`` / ``AutoTokenizer`` / ``SiglipVisionModel`` / ``AutoImageProcessor.from_pretrained(folder)``.
Existing folders are kept unless ``--force``; the output is a function of the seed. With pretraining off
(``--pretrain-steps 0 --vision-pretrain-steps 0``, as the tests' fixture) it takes a few seconds.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from videoccam.model.hf.constants import MEDIA_TOKENS
from videoccam.synthetic import shapes

# Tiny sizes (transformers' *ModelTester style). SigLIP: 64 / 16 = 4 -> 4 x 4 = 16 patches per frame.
SIGLIP_CONFIG = dict(
    hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=64, patch_size=16
)
LLM_CONFIG = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=2048,
    tie_word_embeddings=False,
    # transformers' default 0.02 leaves this tiny LLM unable to learn, in its pretraining, to read shapes from
    # its context (colours it learns): measured after 1,200 steps, loss on a shape word read from the context
    # 1.10 nats (= guessing among 3) at 0.02, 0.01 at 0.1
    initializer_range=0.1,
)
TOKENIZER_VOCAB_SIZE = 800

# xtuner's qwen_chat template (= Qwen2.5 / Yi-1.5 ChatML, without a default system prompt).
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# Phi-3-mini-4k-instruct's template (xtuner's phi3_chat): <|user|>\n{input}<|end|>\n<|assistant|>\n
PHI3_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ '<|system|>\n' + message['content'] + '<|end|>\n' }}"
    "{% elif message['role'] == 'user' %}{{ '<|user|>\n' + message['content'] + '<|end|>\n' }}"
    "{% elif message['role'] == 'assistant' %}{{ '<|assistant|>\n' + message['content'] + '<|end|>\n' }}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}"
)
QWEN2_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", *MEDIA_TOKENS)
PHI3_SPECIAL_TOKENS = (
    "<unk>", "<s>", "</s>", "<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>", *MEDIA_TOKENS,
)  # fmt: skip

# Qwen2's pre-tokenizer split (from its tokenizer.json): contractions, letter runs, single digits, ...
QWEN2_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# Generic text so that words outside the synthetic data still get reasonable merges, and the phrases of
# the evaluation prompts (design.md section 7) tokenize compactly.
FILLER_TEXT = """\
You are a helpful assistant. Please answer the question about the video or the image.
The video shows a person walking in the park with a dog. The man opens the door and the woman sits down.
What is the person doing? Where does this happen? Why did it happen? When does the action start and end?
Answer with the option's letter from the given choices directly.
Question: Options: Best option: Answer: The answer is (A) (B) (C) (D) A. B. C. D.
This video's subtitles are listed below: Select the best answer to the following multiple-choice question.
The quick brown fox jumps over the lazy dog. It is a good day, and there are many things to see here.
Objects move from left to right, then up and down; something appears, disappears, changes color or stops.
Count the number of times the action happens. Summarize the main events in order.
0 1 2 3 4 5 6 7 8 9 10 100 2024 12:30 1.5 - + = ! ? , . ; : ' " ( ) [ ] { } / \\ _ * # @ % & < >
user assistant system
"""


def tokenizer_training_text() -> list[str]:
    """The lines the tokenizers are trained on: the synthetic data's sentences plus generic English."""
    lines = shapes.tokenizer_corpus()
    # Chat-template role names are in every sample: make each one token.
    return lines + FILLER_TEXT.splitlines() + ["user\nassistant\nsystem\n"] * 32


def train_bpe(special_tokens: Sequence[str], vocab_size: int = TOKENIZER_VOCAB_SIZE):
    """Train a Qwen2-style byte-level BPE (``tokenizers.Tokenizer``) with ``special_tokens`` first in its vocab.

    Args:
        special_tokens: Tokens that get ids ``0..len-1`` and are never split.
        vocab_size: Upper bound on the vocabulary (the corpus is small; training may stop earlier).

    Returns:
        The trained ``tokenizers.Tokenizer``.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # Repeat the synthetic sentences so that their words win merges over the one-off filler.
    tokenizer.train_from_iterator(tokenizer_training_text() * 4, trainer=trainer)
    return tokenizer


def build_qwen2_tokenizer():
    """A ``Qwen2TokenizerFast`` (xtuner special-cases that class name: no bos) with the ChatML template."""
    from transformers import Qwen2TokenizerFast

    return Qwen2TokenizerFast(
        tokenizer_object=train_bpe(QWEN2_SPECIAL_TOKENS),
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        additional_special_tokens=["<|im_start|>", *MEDIA_TOKENS],
        chat_template=CHATML_TEMPLATE,
        model_max_length=LLM_CONFIG["max_position_embeddings"],
        errors="replace",
    )


def build_phi3_tokenizer():
    """A ``LlamaTokenizerFast`` (Phi-3's class; prepends ``<s>``) with the Phi-3 chat template."""
    from transformers import LlamaTokenizerFast

    return LlamaTokenizerFast(
        tokenizer_object=train_bpe(PHI3_SPECIAL_TOKENS),
        bos_token="<s>",
        eos_token="<|end|>",
        unk_token="<unk>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|system|>", "<|user|>", "<|assistant|>", "<|endoftext|>", *MEDIA_TOKENS],
        chat_template=PHI3_TEMPLATE,
        model_max_length=LLM_CONFIG["max_position_embeddings"],
        add_bos_token=True,
        add_eos_token=False,
        legacy=False,
    )


PRETRAIN_STEPS = 1200  # next-token steps on synthetic chat text for each tiny LLM (--pretrain-steps)


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch on one intra-op thread inside the block: these models are too small to gain from more, and on a
    shared 2-core machine a second thread spins (measured under load: 14x the CPU time for the same steps)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _report(folder: Path, losses: list[float]) -> None:
    if losses:
        print(f"{folder.name}: pretrained {len(losses)} steps, loss {losses[0]:.2f} -> {sum(losses[-10:]) / 10:.2f}")


VISION_PRETRAIN_STEPS = 300  # steps of the tiny SigLIP on labelled shape frames (--vision-pretrain-steps)
VISION_FEATURE_LAYER = -2  # the hidden_states index the configs' projector reads (visual_select_layer)


class ShapeFrames(NamedTuple):
    """Frames of :func:`shape_frames` and what they show (colour ``1 + index in COLORS``, shape ``1 + index in
    SHAPES``, 0 for background / no shape)."""

    pixels: Any  # uint8 [n, 3, size, size] (:func:`normalized` gives the model's input)
    patch_color: Any  # int64 [n, p], p = (size // patch)^2, row-major as SigLIP orders its tokens
    patch_shape: Any  # int64 [n, p]
    color: Any  # int64 [n]: the frame's shape's colour
    shape: Any  # int64 [n]


def shape_frames(rng, count: int, size: int, patch: int) -> ShapeFrames:
    """``count`` frames as the synthetic videos show them, with what each frame and each patch shows.

    Each frame holds one shape of :mod:`~videoccam.synthetic.shapes` (random colour, shape and position, the
    videos' size) on the dark background, or (one frame in ten) nothing. A patch is labelled with the shape
    covering more than a quarter of it. Time and memory grow linearly in ``count`` (12 KB of pixels per 64 x 64
    frame).
    """
    import numpy as np
    import torch
    from PIL import Image, ImageDraw

    grid = size // patch
    radius = round(size * shapes.SHAPE_RADIUS)
    pixels = np.empty((count, size, size, 3), dtype=np.uint8)
    patch_color = np.zeros((count, grid * grid), dtype=np.int64)
    patch_shape = np.zeros_like(patch_color)
    color, shape = np.zeros(count, dtype=np.int64), np.zeros(count, dtype=np.int64)
    background = np.array(shapes.BACKGROUND)
    for i in range(count):
        image = Image.new("RGB", (size, size), shapes.BACKGROUND)
        if rng.random() >= 0.1:
            c, k = rng.randrange(len(shapes.COLORS)), rng.randrange(len(shapes.SHAPES))
            centre = (rng.uniform(radius + 2, size - radius - 2), rng.uniform(radius + 2, size - radius - 2))
            shapes.draw_shape(ImageDraw.Draw(image), shapes.SHAPES[k], centre, radius, list(shapes.COLORS.values())[c])
            covered = np.abs(np.asarray(image, dtype=np.int64) - background).sum(-1) > 30
            share = covered[: grid * patch, : grid * patch].reshape(grid, patch, grid, patch).mean((1, 3)).reshape(-1)
            patch_color[i] = np.where(share > 0.25, c + 1, 0)
            patch_shape[i] = np.where(share > 0.25, k + 1, 0)
            color[i], shape[i] = c + 1, k + 1
        pixels[i] = np.asarray(image)
    tensor = torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()
    return ShapeFrames(tensor, *(torch.from_numpy(a) for a in (patch_color, patch_shape, color, shape)))


def normalized(pixels):
    """uint8 frames [n, 3, h, w] as the tiny image processor gives them to SigLIP: float32 in [-1, 1]
    (rescale by 1/255, then mean = std = 0.5)."""
    return pixels.float() / 127.5 - 1.0


def pretrain_siglip(model, steps: int, seed: int = 0, batch_size: int = 64, lr: float = 3e-3,
                    pool_size: int = 4096, feature_layer: int = VISION_FEATURE_LAYER) -> list[float]:  # fmt: skip
    """Teach the random tiny SigLIP to see the synthetic shapes: the colour and shape of each frame and patch.

    A real SigLIP arrives pretrained; a random one barely separates a square from a circle, and the projector
    then has little to read the shape from. Two linear heads on ``hidden_states[feature_layer]`` (the features
    the projector reads) predict, from each patch, the colour and shape covering it and, from the mean over
    patches, the frame's colour and shape (:func:`shape_frames`, "none" included); only SigLIP is kept. (Either
    head alone leaves one of the two readings weak: per patch only, a frame's mean feature tells its shape no
    better than before; mean only, single patches stay vague.) Runs on one thread. Time: ``steps`` x
    ``batch_size`` frames through the layers up to ``feature_layer``, plus rendering ``pool_size`` frames once.

    Returns:
        The loss per step (the four cross-entropies summed, nats).
    """
    import random

    import torch
    from torch.nn.functional import cross_entropy

    if steps <= 0:
        return []
    config = model.config
    frames = shape_frames(random.Random(seed), pool_size, config.image_size, config.patch_size)
    num_colors, num_shapes = len(shapes.COLORS) + 1, len(shapes.SHAPES) + 1
    generator = torch.Generator().manual_seed(seed)
    patch_head = torch.nn.Linear(config.hidden_size, num_colors + num_shapes)
    frame_head = torch.nn.Linear(config.hidden_size, num_colors + num_shapes)
    params = [*model.parameters(), *patch_head.parameters(), *frame_head.parameters()]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.1)

    def loss_of(logits, color, shape):  # logits [..., colours + shapes], labels [...]
        return (cross_entropy(logits[..., :num_colors].flatten(0, -2), color.flatten())
                + cross_entropy(logits[..., num_colors:].flatten(0, -2), shape.flatten()))  # fmt: skip

    model.train()
    losses = []
    with _one_thread():
        for _ in range(steps):
            index = torch.randint(pool_size, (batch_size,), generator=generator)
            hidden = model(pixel_values=normalized(frames.pixels[index]), output_hidden_states=True).hidden_states
            features = hidden[feature_layer]  # [b, p, d]
            loss = loss_of(patch_head(features), frames.patch_color[index], frames.patch_shape[index])
            loss = loss + loss_of(frame_head(features.mean(1)), frames.color[index], frames.shape[index])
            loss.backward()
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            losses.append(float(loss.detach()))
    model.eval()
    return losses


def write_siglip(folder: Path, seed: int = 0, pretrain_steps: int = VISION_PRETRAIN_STEPS) -> None:
    """SigLIP vision tower (pretrained on shape frames, :func:`pretrain_siglip`) and its image processor."""
    import torch
    from transformers import SiglipImageProcessor, SiglipVisionConfig, SiglipVisionModel

    torch.manual_seed(seed)
    model = SiglipVisionModel(SiglipVisionConfig(**SIGLIP_CONFIG))
    _report(folder, pretrain_siglip(model, pretrain_steps, seed))
    model.save_pretrained(folder)
    size = SIGLIP_CONFIG["image_size"]
    SiglipImageProcessor(
        size={"height": size, "width": size}, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5]
    ).save_pretrained(folder)


def write_qwen2(folder: Path, seed: int = 0, pretrain_steps: int = PRETRAIN_STEPS) -> None:
    """Qwen2 causal LM with its tokenizer; generation stops at <|im_end|> or <|endoftext|>."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    tokenizer = build_qwen2_tokenizer()
    endoftext, im_end = tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_end|>"])
    config = Qwen2Config(vocab_size=len(tokenizer), bos_token_id=endoftext, eos_token_id=im_end, **LLM_CONFIG)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    _report(folder, pretrain_llm(model, tokenizer, pretrain_steps, seed))
    model.generation_config = GenerationConfig(
        bos_token_id=endoftext, eos_token_id=[im_end, endoftext], pad_token_id=endoftext
    )
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def write_phi3(folder: Path, seed: int = 0, pretrain_steps: int = PRETRAIN_STEPS) -> None:
    """Phi-3 causal LM with its tokenizer; generation stops at <|end|> or <|endoftext|>."""
    import torch
    from transformers import GenerationConfig, Phi3Config, Phi3ForCausalLM

    tokenizer = build_phi3_tokenizer()
    bos, end, endoftext = tokenizer.convert_tokens_to_ids(["<s>", "<|end|>", "<|endoftext|>"])
    config = Phi3Config(
        vocab_size=len(tokenizer),
        bos_token_id=bos,
        eos_token_id=end,
        pad_token_id=endoftext,
        original_max_position_embeddings=LLM_CONFIG["max_position_embeddings"],
        **LLM_CONFIG,
    )
    torch.manual_seed(seed)
    model = Phi3ForCausalLM(config)
    _report(folder, pretrain_llm(model, tokenizer, pretrain_steps, seed))
    model.generation_config = GenerationConfig(bos_token_id=bos, eos_token_id=[end, endoftext], pad_token_id=endoftext)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def chat_corpus(
    num_conversations: int = 4000, seed: int = 0, context_share: float = 0.9
) -> list[list[dict[str, str]]]:
    """Single-turn conversations of the synthetic data's kinds (video/image/text QA, captions), media-free.

    A ``context_share`` of them are reading exercises: the user turn opens with a text description of a video
    or image (where the visual tokens go in multimodal samples) and the answer can only be read from it
    (:func:`videoccam.synthetic.shapes.context_qa`). A real pretrained LLM can answer from its context; without these the
    tiny one cannot (measured: with the caption itself in place of the visual tokens its loss was no lower than
    with another video's caption), and then no projector can make it use a video. The default share, 0.9, is
    what taught the tiny Qwen2 to read within :data:`PRETRAIN_STEPS` steps (at 0.5 it had learnt less than half
    as much by then); the rest teaches the answers' forms without a context.
    """
    import random

    rng = random.Random(seed)
    names = [f"{color} {shape}" for color in shapes.COLORS for shape in shapes.SHAPES]
    conversations = []
    for _ in range(num_conversations):
        if rng.random() < context_share:
            context, question, answer = shapes.context_qa(rng)
            conversations.append([{"role": "user", "content": f"{context}\n{question}"},
                                  {"role": "assistant", "content": answer}])  # fmt: skip
            continue
        kind = rng.random()
        if kind < 0.6:
            count = rng.randint(shapes.MIN_SHAPES, shapes.MAX_SHAPES)
            colors = rng.sample(list(shapes.COLORS), count)
            shown = [f"{c} {rng.choice(list(shapes.SHAPES))}" for c in colors]
            if rng.random() < 0.3:
                question, answer = rng.choice(shapes.VIDEO_CAPTION_PROMPTS), shapes.describe_sequence(shown)
            else:
                question, answer = shapes.video_qa(shown, rng.choice(shapes.VIDEO_QUESTION_TYPES), rng)
        elif kind < 0.85:
            color, shape = rng.choice(names).split()
            if rng.random() < 0.3:
                question, answer = rng.choice(shapes.IMAGE_CAPTION_PROMPTS), shapes.image_caption(color, shape)
            else:
                question, answer = shapes.image_qa(color, shape, rng.choice(["shape", "color"]))
        else:
            question, answer = rng.choice(shapes.text_qa_pool())
        conversations.append([{"role": "user", "content": question}, {"role": "assistant", "content": answer}])
    return conversations


def pretrain_llm(model, tokenizer, steps: int, seed: int = 0, batch_size: int = 16, lr: float = 5e-3) -> list[float]:
    """Teach the random tiny LLM the synthetic data's language (chat format, question and answer forms).

    A frozen *random* LLM cannot be steered by a projector (stage 1 then barely lowers the loss); a real
    stage 1 starts from a pretrained LLM, so the tiny one gets about a thousand steps of next-token training on
    text-only conversations (:func:`chat_corpus`), most of them answered from a description in the prompt: it
    learns to read colours, shapes and their order from its context, which is what the projector then writes
    into. Which colours and shapes a given video shows stays unknown to it: only the projector can supply that.
    Runs on one thread. Time: ``steps`` x ``batch_size`` conversations of about 60 tokens. Returns the loss per
    step.
    """
    import torch

    if steps <= 0:
        return []
    texts = [tokenizer.apply_chat_template(c, tokenize=False) for c in chat_corpus(seed=seed)]
    encoded = [tokenizer.encode(t, add_special_tokens=False) for t in texts]
    pad = tokenizer.pad_token_id
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.1)
    model.train()
    losses = []
    with _one_thread():
        for _ in range(steps):
            losses.append(_llm_step(model, encoded, pad, batch_size, generator, optimizer, schedule))
    model.eval()
    return losses


def _llm_step(model, encoded: list[list[int]], pad: int, batch_size: int, generator, optimizer, schedule) -> float:
    """One next-token step of :func:`pretrain_llm` on a random batch of ``encoded`` conversations; its loss."""
    import torch

    rows = [encoded[i] for i in torch.randint(len(encoded), (batch_size,), generator=generator).tolist()]
    length = max(map(len, rows))
    ids = torch.full((batch_size, length), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for r, row in enumerate(rows):
        ids[r, : len(row)] = torch.tensor(row)
        mask[r, : len(row)] = 1
    labels = ids.masked_fill(mask == 0, -100)
    loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    loss.backward()
    optimizer.step()
    schedule.step()
    optimizer.zero_grad()
    return float(loss.detach())


WRITERS: dict[str, Callable[[Path, int, int], None]] = {"siglip": write_siglip, "qwen2": write_qwen2, "phi3": write_phi3}


def make_tiny_models(
    out_dir: str | Path,
    force: bool = False,
    seed: int = 0,
    pretrain_steps: int = PRETRAIN_STEPS,
    names: Sequence[str] | None = None,
    vision_pretrain_steps: int = VISION_PRETRAIN_STEPS,
) -> dict[str, Path]:
    """Write the tiny models into ``out_dir/<name>``; a folder with a ``config.json`` is kept unless ``force``.

    Args:
        out_dir: Output folder.
        force: Rewrite folders that exist.
        seed: Seed of the random weights.
        pretrain_steps: Next-token training steps of each tiny LLM (0 = random weights).
        names: Which of ``siglip``, ``qwen2``, ``phi3`` to write (default: all).
        vision_pretrain_steps: Training steps of the tiny SigLIP on shape frames (0 = random weights).

    Returns:
        ``{name: folder}`` of the models asked for.

    Raises:
        ValueError: On an unknown name.
    """
    unknown = sorted(set(names or ()) - set(WRITERS))
    if unknown:
        raise ValueError(f"unknown tiny models {unknown}; expected some of {sorted(WRITERS)}")
    out_dir = Path(out_dir)
    folders = {}
    for name, writer in WRITERS.items():
        if names is not None and name not in names:
            continue
        folder = out_dir / name
        folders[name] = folder
        if (folder / "config.json").exists() and not force:
            print(f"{folder}: exists, kept (use --force to rewrite)")
            continue
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        writer(folder, seed, vision_pretrain_steps if name == "siglip" else pretrain_steps)
        print(f"{folder}: wrote {', '.join(sorted(path.name for path in folder.iterdir()))}")
    return folders
