"""The frozen-SigLIP feature cache: keys that change with everything that shapes a feature, exact features, and
the cached loss equal to the uncached one."""

from __future__ import annotations

import json
import os

import pytest
import torch
from transformers import AutoTokenizer, SiglipImageProcessor, SiglipVisionModel
from xtuner.utils import PROMPT_TEMPLATE

from tests.conftest import ROOT
from tests.dataset import corpus
from videoccam.dataset.collate import videoccam_collate_fn
from videoccam.dataset.dataset import VideoCCAMDataset
from videoccam.dataset.feature_cache import VisionFeatureCache, enable_feature_cache, media_identity
from videoccam.model.hf.modeling_videoccam import encode_frames


@pytest.fixture(scope="module")
def counter(tmp_path_factory):
    root = tmp_path_factory.mktemp("fc_data")
    corpus.write_counter_video(root / "a.mp4")
    corpus.write_counter_video(root / "b.mp4", num_frames=60)
    records = [{"id": name, "video": f"{name}.mp4", "conversations": [
        {"from": "human", "value": "<video>\nWhat happens?"}, {"from": "gpt", "value": "A counter counts."}]}
        for name in ("a", "b")]  # fmt: skip
    records.append({"id": "t", "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hi."}]})
    (root / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return root


@pytest.fixture(scope="module")
def encoder(tiny_models):
    return SiglipVisionModel.from_pretrained(tiny_models / "siglip").eval()


def make_dataset(tiny_models, root, cache=None, **kwargs):
    return VideoCCAMDataset(
        str(root / "data.jsonl"), tokenizer=AutoTokenizer.from_pretrained(tiny_models / "qwen2"),
        image_processor=SiglipImageProcessor.from_pretrained(tiny_models / "siglip"),
        template=PROMPT_TEMPLATE.qwen_chat, num_queries=16, max_length=256, num_frames=4, feature_cache=cache,
        **kwargs,
    )  # fmt: skip


def test_cached_features_are_the_towers_features_and_are_reused(tiny_models, counter, encoder, tmp_path):
    cache = VisionFeatureCache(tmp_path / "cache", encoder, visual_select_layer=-2)
    dataset = make_dataset(tiny_models, counter, cache)
    plain = make_dataset(tiny_models, counter, normalize_in_model=False)
    item = dataset[0]
    assert "pixel_values" not in item and item["visual_features"].shape[0] == 4
    with torch.no_grad():
        expected = encode_frames(encoder, plain[0]["pixel_values"], -2, 16)
    torch.testing.assert_close(item["visual_features"], expected, rtol=0, atol=0)  # stored in the tower's dtype
    assert (cache.hits, cache.misses) == (0, 1)
    torch.testing.assert_close(dataset[0]["visual_features"], expected, rtol=0, atol=0)
    assert (cache.hits, cache.misses) == (1, 1)
    assert "visual_features" not in dataset[2]  # text-only
    batch = videoccam_collate_fn([dataset[0], dataset[1], dataset[2]])["data"]
    assert batch["pixel_values"] is None and batch["num_frames"] == [4, 4] and batch["visual_features"].shape[0] == 8
    assert len(list((tmp_path / "cache").rglob("*.safetensors"))) == 2


def test_several_media_of_a_record_are_cached_item_by_item(tiny_models, counter, encoder, tmp_path):
    record = {"id": "m", "media": [{"video": "a.mp4", "num_frames": 2}, {"video": "b.mp4"}],
              "conversations": [{"from": "human", "value": "<video> then <video>?"}, {"from": "gpt", "value": "Yes."}]}
    (tmp_path / "multi.jsonl").write_text(json.dumps(record) + "\n")
    cache = VisionFeatureCache(tmp_path / "cache", encoder)
    dataset = make_dataset(tiny_models, counter, cache, data_root=str(counter))
    multi = VideoCCAMDataset(str(tmp_path / "multi.jsonl"), tokenizer=dataset.tokenizer,
                             image_processor=dataset.image_processor, template=PROMPT_TEMPLATE.qwen_chat,
                             num_queries=16, max_length=256, num_frames=4, feature_cache=cache, data_root=str(counter))
    item = multi[0]
    assert item["num_frames"] == [2, 4] and item["visual_features"].shape[0] == 6
    torch.testing.assert_close(item["visual_features"][2:], dataset[1]["visual_features"], rtol=0, atol=0)
    assert (cache.hits, cache.misses) == (1, 2)  # b.mp4 at 4 frames was stored by the multi-media record
    assert videoccam_collate_fn([item, dataset[0]])["data"]["num_frames"] == [2, 4, 4]


def test_a_stale_key_recomputes_and_never_reuses(tiny_models, counter, encoder, tmp_path):
    cache = VisionFeatureCache(tmp_path / "cache", encoder)
    video = counter / "a.mp4"
    preprocessing = {"size": 64}
    key = cache.key(video, [1, 2], preprocessing)
    assert key == cache.key(video, [1, 2], dict(preprocessing))
    others = {
        cache.key(video, [1, 3], preprocessing),  # other frames
        cache.key(video, [1, 2], {"size": 32}),  # other preprocessing
        cache.key(counter / "b.mp4", [1, 2], preprocessing),  # other file
        VisionFeatureCache(tmp_path / "cache", encoder, visual_select_layer=-1).key(video, [1, 2], preprocessing),
        VisionFeatureCache(tmp_path / "cache", encoder, dtype="float16").key(video, [1, 2], preprocessing),
    }
    changed = SiglipVisionModel.from_pretrained(tiny_models / "siglip")
    with torch.no_grad():
        changed.vision_model.post_layernorm.bias.add_(1e-3)  # other weights
    others.add(VisionFeatureCache(tmp_path / "cache", changed).key(video, [1, 2], preprocessing))
    assert key not in others and len(others) == 6
    copy = tmp_path / "a.mp4"
    copy.write_bytes(video.read_bytes())
    before = cache.key(copy, [1, 2], preprocessing)
    os.utime(copy, ns=(copy.stat().st_atime_ns, copy.stat().st_mtime_ns + 1_000_000))  # touched: new mtime
    assert cache.key(copy, [1, 2], preprocessing) != before
    assert media_identity(copy)["size"] == video.stat().st_size

    # through the dataset: rewriting a video makes its next access a miss
    data = tmp_path / "data"
    data.mkdir()
    (data / "data.jsonl").write_text((counter / "data.jsonl").read_text())
    for name in ("a.mp4", "b.mp4"):
        (data / name).write_bytes((counter / name).read_bytes())
    dataset = make_dataset(tiny_models, data, VisionFeatureCache(tmp_path / "cache2", encoder))
    dataset[0], dataset[0]
    assert (dataset.feature_cache.hits, dataset.feature_cache.misses) == (1, 1)
    (data / "a.mp4").write_bytes((counter / "b.mp4").read_bytes())  # another video under the same name
    item = dataset[0]
    assert (dataset.feature_cache.hits, dataset.feature_cache.misses) == (1, 2)
    torch.testing.assert_close(item["visual_features"], dataset[1]["visual_features"])  # now b's frames


def test_float16_storage_halves_the_bytes(tiny_models, counter, encoder, tmp_path):
    cache = VisionFeatureCache(tmp_path / "cache", encoder, dtype="float16")
    item = make_dataset(tiny_models, counter, cache)[0]
    assert item["visual_features"].dtype == torch.float16


def test_cached_loss_equals_the_uncached_loss(tiny_models, counter, tmp_path):
    from tests.model.test_videoccam_model import build

    model = build(tiny_models, stage=1).train()
    cached = make_dataset(tiny_models, counter, VisionFeatureCache(tmp_path / "cache", model.visual_encoder))
    plain = make_dataset(tiny_models, counter)
    losses = []
    for dataset in (plain, cached, cached):  # uncached, cache misses, cache hits
        model.zero_grad(set_to_none=True)
        loss = model(videoccam_collate_fn([dataset[i] for i in range(3)])["data"], mode="loss")["loss"]
        loss.backward()
        losses.append((loss.detach(), model.projector.queries.grad.clone()))
    for loss, grad in losses[1:]:
        torch.testing.assert_close(loss, losses[0][0], rtol=0, atol=1e-5)
        torch.testing.assert_close(grad, losses[0][1], rtol=1e-5, atol=1e-6)
    stage2 = build(tiny_models, stage=2).train()
    with pytest.raises(ValueError, match="trains its vision tower"):
        stage2(videoccam_collate_fn([cached[0]])["data"], mode="loss")


def test_enable_feature_cache_only_for_a_frozen_tower(tmp_path):
    from videoccam.config import load_config

    cfg = load_config(ROOT / "configs/tiny/videoccam_tiny_qwen2_stage1.py")
    enable_feature_cache(cfg, tmp_path)
    spec = cfg.train_dataloader.dataset.feature_cache
    assert spec["cache_dir"] == str(tmp_path) and spec["visual_encoder"] == cfg.model.visual_encoder
    with pytest.raises(ValueError, match="frozen vision tower without LoRA"):
        enable_feature_cache(load_config(ROOT / "configs/tiny/videoccam_tiny_qwen2_stage2.py"), tmp_path)
