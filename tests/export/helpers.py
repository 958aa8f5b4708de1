"""Shared by the export / conversion tests: a "trained" tiny stage-2 model, prompts, frames, reference decoding.

Plain functions (not fixtures): tests/conftest.py and the test modules wrap them in fixtures.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from tests.conftest import ROOT

STAGE2 = ROOT / "configs/tiny/videoccam_tiny_qwen2_stage2.py"
FINETUNE_FROM_HF = ROOT / "configs/tiny/videoccam_tiny_qwen2_finetune_from_hf.py"
QUESTION = "Which shape appears first?"
KINDS = {"video": 6, "image": 1, "text": 0}  # frames of each kind of media in the export tests
MAX_NEW_TOKENS = 6


def model_cfg_options(tiny_models: Path, llm: str = "qwen2") -> dict[str, Any]:
    """Config overrides pointing a configs/tiny config at the fixture models (no data needed)."""
    llm_path, vis_path = str(tiny_models / llm), str(tiny_models / "siglip")
    return {
        "model.llm.pretrained_model_name_or_path": llm_path,
        "model.visual_encoder.pretrained_model_name_or_path": vis_path,
        "tokenizer.pretrained_model_name_or_path": llm_path,
        "image_processor.pretrained_model_name_or_path": vis_path,
        "train_dataloader.dataset.tokenizer.pretrained_model_name_or_path": llm_path,
        "train_dataloader.dataset.image_processor.pretrained_model_name_or_path": vis_path,
        "model.pretrained_pth": None,
    }


def as_cli_options(options: dict[str, Any]) -> list[str]:
    return [f"{k}={v}" for k, v in options.items()]


@dataclass
class Trained:
    cfg: Any
    model: Any  # VideoCCAMModel, eval mode
    checkpoint: Path
    options: dict[str, Any]
    template: Any
    tokenizer: Any  # the training tokenizer
    image_processor: Any


def build_trained(tiny_models: Path, out_dir: Path) -> Trained:
    """Stage-2 model of the tiny config (LoRA on LLM and SigLIP) with every trainable weight perturbed, so the
    adapters and the projector change the output; its trainable weights saved as an mmengine checkpoint."""
    from mmengine.config import Config
    from xtuner.registry import BUILDER

    options = model_cfg_options(tiny_models)
    cfg = Config.fromfile(str(STAGE2))
    cfg.merge_from_dict(options)
    torch.manual_seed(0)
    model = BUILDER.build(cfg.model)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad:  # LoRA A/B (B starts at zero) and the projector
                p.add_(torch.randn(p.shape, generator=generator) * 0.2)
    model.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = out_dir / "iter_2.pth"
    torch.save({"state_dict": model.state_dict()}, checkpoint)
    return Trained(
        cfg=cfg,
        model=model,
        checkpoint=checkpoint,
        options=options,
        template=cfg.prompt_template,
        tokenizer=BUILDER.build(cfg.tokenizer),
        image_processor=BUILDER.build(cfg.image_processor),
    )


def frames(n: int, seed: int) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)) for _ in range(n)]


def conversation(kind: str, question: str = QUESTION) -> list[dict[str, str]]:
    prefix = {"video": "<video>\n", "image": "<image>\n", "text": ""}[kind]
    return [{"role": "user", "content": prefix + question}]


def media_inputs(kind: str, image_processor, seed: int = 0):
    items = frames(KINDS[kind], seed) if KINDS[kind] else None
    pixel_values = image_processor(items, return_tensors="pt")["pixel_values"] if items else None
    return items, pixel_values


def inference_ids(kind: str, tokenizer, model) -> list[int]:
    from videoccam.model.hf.modeling_videoccam import tokenize_with_media

    text = tokenizer.apply_chat_template(conversation(kind), tokenize=False, add_generation_prompt=True)
    return tokenize_with_media(text, tokenizer, model.config.media_tokens, model.config.image_token_index)


def training_prompt_ids(
    kind: str, tokenizer: Any, template: Any, num_queries: int, question: str = QUESTION
) -> list[int]:
    """Prompt ids exactly as the training dataset builds them (records -> xtuner template -> encode_fn): the
    ids of a one-turn sample before its first supervised token."""
    from videoccam.dataset.dataset import tokenize_sample
    from videoccam.dataset.records import parse_record
    from videoccam.model.hf.constants import IGNORE_INDEX

    record: dict[str, Any] = {"conversations": [{"from": "human", "value": conversation(kind, question)[0]["content"]},
                                                {"from": "gpt", "value": "The red square."}]}
    if kind != "text":
        record[kind] = "media"
    sample = parse_record(record, 0, "test", Path("."))
    tokens = tokenize_sample(sample, tokenizer, template, 10**6, num_queries, "test")
    first_label = next(i for i, label in enumerate(tokens["labels"]) if label != IGNORE_INDEX)
    return tokens["input_ids"][:first_label]


def training_batch(ids: list[int], pixel_values: torch.Tensor | None) -> dict[str, Any]:
    input_ids = torch.tensor([ids])
    return dict(
        input_ids=input_ids,
        attention_mask=torch.ones_like(input_ids),
        pixel_values=pixel_values,
        num_frames=[] if pixel_values is None else [pixel_values.shape[0]],
    )


@torch.no_grad()
def training_greedy(model: Any, ids: list[int], pixel_values: torch.Tensor | None, eos: list[int], n: int) -> list[int]:
    """Greedy decoding with the training model's forward (mode="tensor"), no KV cache: the reference."""
    out: list[int] = []
    for _ in range(n):
        logits = model(training_batch(ids + out, pixel_values), mode="tensor")
        token = int(logits[0, -1].argmax())
        out.append(token)
        if token in eos:
            break
    return out
