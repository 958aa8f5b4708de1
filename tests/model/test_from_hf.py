"""Fine-tuning from a converted folder: the example config loads LLM, SigLIP and projector from it."""

from __future__ import annotations

import pytest
import torch

from tests.export.helpers import FINETUNE_FROM_HF, build_trained, frames, training_batch


@pytest.fixture(scope="module")
def hf_dir(tiny_models, tmp_path_factory):
    from videoccam.export.hf_folder import save_hf_folder

    trained = build_trained(tiny_models, tmp_path_factory.mktemp("from_hf_ckpt"))
    out = tmp_path_factory.mktemp("from_hf") / "videoccam_tiny_from_hf"
    save_hf_folder(trained.model, trained.cfg, out, save_pretrained_kwargs={"max_shard_size": "300KB"})  # sharded
    return out


def test_finetune_config_starts_from_the_folder(hf_dir):
    from mmengine.config import Config
    from xtuner.registry import BUILDER

    from videoccam.export.lora_merge import merged_state_dict
    from videoccam.model.from_hf import load_videoccam_weights
    from videoccam.model.videoccam_model import VideoCCAMModel

    cfg = Config.fromfile(str(FINETUNE_FROM_HF))
    assert cfg.model.pretrained_pth is None
    path = str(hf_dir)
    cfg.merge_from_dict({
        "model.llm.path": path,
        "model.visual_encoder.path": path,
        "model.projector.path": path,
        "tokenizer.pretrained_model_name_or_path": path,
        "image_processor.pretrained_model_name_or_path": path,
        "train_dataloader.dataset.tokenizer.pretrained_model_name_or_path": path,
        "train_dataloader.dataset.image_processor.pretrained_model_name_or_path": path,
    })
    model = BUILDER.build(cfg.model)
    assert isinstance(model, VideoCCAMModel) and model.use_llm_lora and model.use_visual_encoder_lora
    # fresh adapters (B = 0): the merged weights are exactly the folder's
    for name in ("llm", "visual_encoder"):
        folder = load_videoccam_weights(hf_dir, name)
        mine = merged_state_dict(getattr(model, name))
        assert set(mine) == set(folder), name
        for key, value in folder.items():
            torch.testing.assert_close(mine[key], value, rtol=0, atol=0, msg=f"{name}.{key}")
    for key, value in load_videoccam_weights(hf_dir, "projector").items():
        torch.testing.assert_close(model.projector.state_dict()[key], value, rtol=0, atol=0)

    # and the model computes what the folder's model computes
    from transformers import AutoModel

    tokenizer = BUILDER.build(cfg.tokenizer)
    image_processor = BUILDER.build(cfg.image_processor)
    assert "<video>" in tokenizer.get_vocab()
    folder_model = AutoModel.from_pretrained(hf_dir, trust_remote_code=True).eval()
    pixel_values = image_processor(frames(3, 0), return_tensors="pt")["pixel_values"]
    ids = [5, 6, -200, 7, 8]
    model.eval()
    with torch.no_grad():
        mine = model(training_batch(ids, pixel_values), mode="tensor")
        theirs = folder_model(input_ids=torch.tensor([ids]), pixel_values=pixel_values, num_frames=[3]).logits
    torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=0)


def test_projector_overrides_and_errors(hf_dir, tmp_path):
    from videoccam.model.from_hf import llm_from_videoccam, projector_from_videoccam

    projector = projector_from_videoccam(hf_dir, dropout=0.0, frame_chunk_size=2, torch_dtype=torch.float64)
    assert projector.config.frame_chunk_size == 2 and projector.queries.dtype == torch.float64
    with pytest.raises(ValueError, match="unknown CCAMProjectorConfig fields"):
        projector_from_videoccam(hf_dir, no_such_field=1)
    with pytest.raises(ValueError, match="do not fit"):
        projector_from_videoccam(hf_dir, num_queries=8)
    with pytest.raises(FileNotFoundError, match="not a converted Video-CCAM folder"):
        llm_from_videoccam(tmp_path)
