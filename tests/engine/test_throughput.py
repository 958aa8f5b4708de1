"""videoccam/engine/throughput.py: the FLOPs of one tiny step against a hand count, and the logged rates."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from mmengine.logging import MessageHub

from tests.export.helpers import model_cfg_options
from tests.conftest import ROOT
from videoccam.engine.throughput import ThroughputHook, batch_counts
from videoccam.model.hf.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX

STAGE1 = ROOT / "configs/tiny/videoccam_tiny_qwen2_stage1.py"


@pytest.fixture(scope="module")
def stage1_model(tiny_models):
    from mmengine.config import Config
    from xtuner.registry import BUILDER

    cfg = Config.fromfile(str(STAGE1))
    cfg.merge_from_dict(model_cfg_options(tiny_models))
    return BUILDER.build(cfg.model)


def _tiny_batch() -> dict:
    """A collated batch: a 16-frame video (20 text tokens) and an image (12 text tokens, padded to 20)."""
    ids = torch.zeros(2, 20, dtype=torch.long)
    ids[:, 2] = IMAGE_TOKEN_INDEX
    mask = torch.zeros(2, 20, dtype=torch.long)
    mask[0, :20], mask[1, :12] = 1, 1
    labels = torch.full((2, 20), IGNORE_INDEX)
    labels[0, 15:20], labels[1, 9:12] = 7, 7  # 5 + 3 answer tokens
    return {"input_ids": ids, "attention_mask": mask, "labels": labels, "pixel_values": torch.zeros(17, 3, 64, 64),
            "num_frames": [16, 1], "skipped": []}  # fmt: skip


def hand_count_stage1(vocab: int) -> float:
    """FLOPs of the tiny stage-1 step on ``_tiny_batch``, counted by hand from the tiny configs.

    SigLIP (tools/make_tiny_models.py): 64x64 images, patch 16 -> p = 16 patches, width c = 32, MLP 64, 2 layers,
    attention-pooling head. Projector (configs/tiny): q = 32 queries, width e = 64, MLP 128, 1 block, group-causal
    self-attention, output 64. LLM: width 64, MLP 128, 2 layers, 4 heads x 16, 2 KV heads, vocabulary ``vocab``
    (the tiny tokenizer's: it grows with the synthetic data's words).
    Stage 1 trains the projector only: SigLIP runs forward only; the frozen LLM passes input gradients back.
    """
    # SigLIP, per frame (forward only)
    conv = 2 * 16 * (3 * 16 * 16) * 32  # patch embedding: 786,432
    layer = 2 * 16 * (4 * 32 * 32 + 2 * 32 * 64) + 4 * 16 * 16 * 32  # q,k,v,o + MLP; QK^T + AV: 294,912
    head = 2 * 32 * 32 + 2 * 16 * 2 * 32 * 32 + 4 * 16 * 32 + 2 * (32 * 32 + 2 * 32 * 64)  # probe attention + MLP
    siglip = 17 * (conv + 2 * layer + head)  # 17 frames

    # projector, per item with t frames
    def projector(t: int, cross_pairs: int, self_pairs: int) -> int:
        queries = 2 * 32 * (4 * 64 * 64 + 2 * 64 * 64 + 3 * 64 * 128)  # self-attn q,k,v,o; cross q,o; MLP
        kv = 2 * t * 16 * 2 * 32 * 64  # cross-attention K, V of t x 16 frame tokens (width 32 -> 64)
        attn = 4 * 64 * (self_pairs + cross_pairs)
        out = 2 * 32 * 64 * 64
        forward = queries + kv + attn + out
        backward = (queries + 2 * attn + out) + (queries + kv + out)  # input gradients + weight gradients
        return forward + backward

    # video, t = 16: query i sees frames 0..i//2 (16 x (i//2 + 1) keys) and queries j with j//2 <= i//2
    video_cross = 16 * sum(i // 2 + 1 for i in range(32))  # 4,352
    video_self = sum(2 * (i // 2 + 1) for i in range(32))  # 544
    proj = projector(16, video_cross, video_self) + projector(1, 32 * 16, 32 * 32)

    # LLM: lengths 20 - 1 + 32 = 51 and 12 - 1 + 32 = 43 tokens; forward + input gradients (1x linear, 2x attention)
    tokens, pairs = 51 + 43, 51 * 52 // 2 + 43 * 44 // 2
    linear = 2 * tokens * (64 * 64 + 64 * 32 + 64 * 32 + 64 * 64 + 3 * 64 * 128)  # per layer
    attn = 4 * 64 * pairs  # per layer, causal
    head = 2 * (5 + 3) * 64 * vocab  # LM head on the 8 answer tokens only (as VideoCCAMModel._answer_loss)
    llm = 2 * (linear + attn) + 2 * (linear + 2 * attn) + 2 * head
    return siglip + proj + llm


def test_step_flops_match_a_hand_count_within_5_percent(stage1_model):
    hook = ThroughputHook()
    hook.before_train(SimpleNamespace(model=SimpleNamespace(module=stage1_model)))  # unwraps like DDP
    data = _tiny_batch()
    counts, flops = hook.step_flops(data)
    assert counts == {"samples": 2, "lengths": [51, 43], "num_frames": [16, 1], "answer_tokens": 8}
    hand = hand_count_stage1(stage1_model.llm.config.vocab_size)
    assert flops == pytest.approx(hand, rel=0.05)
    assert flops == pytest.approx(hand, rel=1e-9)  # the same conventions: in fact equal


def test_hook_logs_rates_per_second_and_tflops_per_device(stage1_model):
    hook = ThroughputHook()
    hub = MessageHub.get_instance("throughput_test")
    hub.update_scalar("train/time", 2.0)
    hub.update_scalar("train/data_time", 0.5)
    runner = SimpleNamespace(model=stage1_model, message_hub=hub)
    hook.before_train(runner)
    hook.after_train_iter(runner, 0, {"data": _tiny_batch(), "data_samples": None})
    got = {k: hub.get_scalar(f"train/{k}").current() for k in
           ("samples_per_s", "tokens_per_s", "frames_per_s", "data_wait", "tflops_per_device")}  # fmt: skip
    assert got["samples_per_s"] == 1.0 and got["tokens_per_s"] == 47.0 and got["frames_per_s"] == 8.5
    assert got["data_wait"] == 0.25
    assert got["tflops_per_device"] == pytest.approx(hand_count_stage1(stage1_model.llm.config.vocab_size) / 2.0 / 1e12)


def test_batch_counts_of_an_all_skipped_batch():
    assert batch_counts({"skipped": [{"index": 1}]}, 32) == {"samples": 0, "lengths": [], "num_frames": [],
                                                               "answer_tokens": 0}  # fmt: skip
