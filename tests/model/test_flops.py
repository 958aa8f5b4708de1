"""videoccam/model/flops.py: the step FLOP count against torch's FLOP counter, and its attention pair counts.

The hand count of a whole tiny step (attention included) is in tests/engine/test_throughput.py.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from tests.export.helpers import STAGE2, model_cfg_options
from tests.conftest import ROOT
from videoccam.model.flops import StepFlopCounter
from videoccam.model.hf.ccam_projector import CCAMProjectorConfig
from videoccam.model.hf.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX

STAGE1 = ROOT / "configs/tiny/videoccam_tiny_qwen2_stage1.py"


_MODELS: dict = {}


def _model(config, tiny_models):
    """The tiny model of ``config`` in training mode, built once per test session."""
    if config not in _MODELS:
        from mmengine.config import Config
        from xtuner.registry import BUILDER

        cfg = Config.fromfile(str(config))
        cfg.merge_from_dict(model_cfg_options(tiny_models))
        torch.manual_seed(0)
        _MODELS[config] = BUILDER.build(cfg.model).train()
    return _MODELS[config]


def _batch(frames: list[int], num_queries: int) -> tuple[dict, list[int]]:
    """Samples of equal length (no padding), one media item each; (data, LLM lengths)."""
    ids, labels = [], []
    for _ in frames:
        row = [5, 6, 7, IMAGE_TOKEN_INDEX] + [8] * 20
        ids.append(row)
        labels.append([IGNORE_INDEX] * (len(row) - 5) + [9] * 5)
    data = {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels), "attention_mask": torch.ones(len(ids), 24),
            "pixel_values": torch.randn(sum(frames), 3, 64, 64), "num_frames": frames}  # fmt: skip
    lengths = [len(r) - 1 + num_queries for r in ids]
    return data, lengths


@pytest.mark.parametrize("config, rel", [(STAGE1, 1e-9), (STAGE2, 0.05)])
def test_weight_products_match_torch_flop_counter(config, rel, tiny_models):
    """Linear layers and the patch convolution, forward and backward, as torch counts them on a real step.

    Stage 1 (projector only) is exact. Stage 2 (LoRA on SigLIP's first layer and the LLM) is over-counted by the
    q/k/v input gradients of SigLIP's first layer, which no gradient needs (documented; 2.7% here).
    """
    model = _model(config, tiny_models)
    frames = [16, 16]
    data, lengths = _batch(frames, model.projector.config.num_queries)
    answer_tokens = int((data["labels"][:, 1:] != IGNORE_INDEX).sum())
    with FlopCounterMode(display=False) as counter:
        model(data, mode="loss")["loss"].backward()
    counts = counter.get_flop_counts()
    measured = sum(v for op, v in counts["Global"].items() if "bmm" not in str(op))  # bmm: attention products
    # SigLIP's pooling head goes through nn.MultiheadAttention, whose frozen fast path torch counts differently
    head_key = next(k for k in counts if k.endswith("vision_model.head"))
    measured -= sum(v for op, v in counts[head_key].items() if "bmm" not in str(op))
    flop_counter = StepFlopCounter(model, attention=False)
    counted = flop_counter(frames, lengths, answer_tokens).total - sum(frames) * flop_counter.vision_head
    if rel < 1e-6:
        assert counted == measured
    else:
        assert measured <= counted <= measured * (1 + rel)


def test_attention_pairs_follow_the_ccam_masks(tiny_models):
    model = _model(STAGE1, tiny_models)
    counter = StepFlopCounter(model)
    # N = 32 queries, T = 16 frames: tau(i) = i // 2, query i sees tau(i) + 1 frames and 2 (tau(i) + 1) queries
    assert counter._pairs(16) == (2 * sum(range(1, 17)), 4 * sum(range(1, 17)))
    assert counter._pairs(1) == (32, 32 * 32)  # an image: every query sees its one frame and every query
    for fields, pairs in [({"causal_mask": False}, (32 * 16, 32 * 32)), ({"self_attn": "none"}, (272, 0)),
                          ({"self_attn": "full"}, (272, 32 * 32))]:  # fmt: skip
        counter.projector_cfg = CCAMProjectorConfig(**{**model.projector.config.to_dict(), **fields})
        counter._tau = {}
        assert counter._pairs(16) == pairs


def test_frozen_parts_have_no_backward(tiny_models):
    """Stage 1: SigLIP forward only; stage 2 (LoRA on SigLIP): a SigLIP backward appears; text-only LLM batches
    of a frozen LLM have no backward at all."""
    stage1, stage2 = StepFlopCounter(_model(STAGE1, tiny_models)), StepFlopCounter(_model(STAGE2, tiny_models))
    p, c = stage1.patches, stage1.vision_width
    forward_per_frame = 2 * p * stage1.conv + sum(2 * p * layer.linear + 4 * p * p * c
                                                  for layer in stage1.vision_layers) + stage1.vision_head  # fmt: skip
    assert stage1.vision(3) == 3 * forward_per_frame
    assert stage2.vision(3) > stage1.vision(3)
    forward_llm = stage1.llm([40], 5, with_media=False)
    assert stage1.llm([40], 5, with_media=True) > 2 * forward_llm  # input gradients through the frozen LLM
    assert forward_llm == sum(2 * 40 * layer.linear for layer in stage1.llm_layers) + \
        len(stage1.llm_layers) * 4 * stage1.llm_attention_width * 40 * 41 / 2 + 2 * 5 * stage1.head_size
