"""Tiny random-weight stand-ins for SigLIP, Qwen2 and Phi-3 (with tokenizers) for tests and the quickstart.

Nothing is downloaded: the tokenizers are byte-level BPEs trained here on the synthetic data's sentences
(:func:`videoccam.synthetic.shapes.tokenizer_corpus`) plus some generic English and the benchmark prompt phrases,
and the models are built from configs with seeded random weights.

Output of :func:`make_tiny_models` (``tools/make_tiny_models.py --out DIR``, every folder written with
``save_pretrained``)::

    DIR/siglip/  SiglipVisionModel (hidden 32, 2 layers, 2 heads, 64x64 images, patch 16 -> 16 tokens per
                 frame, no CLS token) + SiglipImageProcessor (64x64, mean = std = 0.5)
    DIR/qwen2/   Qwen2ForCausalLM (hidden 64, 2 layers, 4 heads / 2 KV heads) + Qwen2TokenizerFast
                 (ChatML chat template; eos <|im_end|>, pad <|endoftext|>, no bos)
    DIR/phi3/    Phi3ForCausalLM (same sizes) + LlamaTokenizerFast (Phi-3 chat template; bos <s>,
                 eos <|end|>, pad <|endoftext|>)

Both tokenizers hold ``<image>`` and ``<video>`` as special tokens. The LLMs' vocab size is the tokenizer's
length. Each folder loads offline with ``AutoModelForCausalLM`` / ``AutoTokenizer`` / ``SiglipVisionModel`` /
``AutoImageProcessor.from_pretrained(folder)``. Existing folders are kept unless ``--force``; the output
is deterministic and takes a few seconds.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

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


PRETRAIN_STEPS = 600  # next-token steps on synthetic chat text for each tiny LLM (--pretrain-steps)


def _report(folder: Path, losses: list[float]) -> None:
    if losses:
        print(f"{folder.name}: pretrained {len(losses)} steps, loss {losses[0]:.2f} -> {sum(losses[-10:]) / 10:.2f}")


def write_siglip(folder: Path, seed: int = 0, pretrain_steps: int = 0) -> None:
    """SigLIP vision tower and image processor."""
    import torch
    from transformers import SiglipImageProcessor, SiglipVisionConfig, SiglipVisionModel

    torch.manual_seed(seed)
    SiglipVisionModel(SiglipVisionConfig(**SIGLIP_CONFIG)).save_pretrained(folder)
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
    num_conversations: int = 4000, seed: int = 0, context_share: float = 0.5
) -> list[list[dict[str, str]]]:
    """Single-turn conversations of the synthetic data's kinds (video/image/text QA, captions), media-free.

    A ``context_share`` of them are reading exercises: the user turn opens with a text description of a video
    or image (where the visual tokens go in multimodal samples) and the answer can only be read from it
    (:func:`videoccam.synthetic.shapes.context_qa`). A real pretrained LLM can answer from its context; without these the
    tiny one cannot (measured: with the caption itself in place of the visual tokens its loss was no lower than
    with another video's caption), and then no projector can make it use a video.
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


def pretrain_llm(model, tokenizer, steps: int, seed: int = 0, batch_size: int = 16, lr: float = 3e-3) -> list[float]:
    """Teach the random tiny LLM the synthetic data's language (chat format, question and answer forms).

    A frozen *random* LLM cannot be steered by a projector (stage 1 then barely lowers the loss); a real
    stage 1 starts from a pretrained LLM, so the tiny one gets a few hundred steps of next-token training on
    text-only conversations (:func:`chat_corpus`), half of them answered from a description in the prompt.
    Which colours and shapes a given video shows stays unknown to it: only the projector can supply that.
    Returns the loss per step.
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
    for _ in range(steps):
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
        losses.append(float(loss.detach()))
    model.eval()
    return losses


WRITERS: dict[str, Callable[[Path, int, int], None]] = {"siglip": write_siglip, "qwen2": write_qwen2, "phi3": write_phi3}


def make_tiny_models(
    out_dir: str | Path,
    force: bool = False,
    seed: int = 0,
    pretrain_steps: int = PRETRAIN_STEPS,
    names: Sequence[str] | None = None,
) -> dict[str, Path]:
    """Write the tiny models into ``out_dir/<name>``; a folder with a ``config.json`` is kept unless ``force``.

    Args:
        out_dir: Output folder.
        force: Rewrite folders that exist.
        seed: Seed of the random weights.
        pretrain_steps: Next-token training steps of each tiny LLM (0 = random weights).
        names: Which of ``siglip``, ``qwen2``, ``phi3`` to write (default: all).

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
        writer(folder, seed, pretrain_steps)
        print(f"{folder}: wrote {', '.join(sorted(path.name for path in folder.iterdir()))}")
    return folders
