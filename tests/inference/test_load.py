"""videoccam/inference/load.py: in-memory conversion equals the converted folder; how a model must be named."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import write_malicious_checkpoint
from tests.export.helpers import STAGE2, conversation, inference_ids, media_inputs


def test_in_memory_conversion_equals_folder(trained, loaded):
    """load_model(config=, checkpoint=) converts without touching disk and gives the folder's model."""
    from videoccam.inference.load import build_hf_from_checkpoint, load_model

    model, tokenizer, image_processor = loaded
    mem_model, mem_tokenizer, mem_processor = load_model(
        config=str(STAGE2), checkpoint=str(trained.checkpoint), cfg_options=trained.options
    )
    assert type(mem_model).__name__ == "VideoCCAMForCausalLM"
    assert mem_tokenizer.chat_template == tokenizer.chat_template
    assert mem_model.generation_config.eos_token_id == model.generation_config.eos_token_id
    items, pixel_values = media_inputs("video", image_processor, seed=5)
    ids = inference_ids("video", tokenizer, model)
    with torch.no_grad():
        a = model(input_ids=torch.tensor([ids]), pixel_values=pixel_values, num_frames=[6]).logits
        b = mem_model(input_ids=torch.tensor([ids]), pixel_values=pixel_values, num_frames=[6]).logits
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    assert mem_model.chat([conversation("video")], [items], mem_tokenizer, mem_processor, max_new_tokens=4) == \
        model.chat([conversation("video")], [items], tokenizer, image_processor, max_new_tokens=4)
    assert callable(build_hf_from_checkpoint)
    with pytest.raises(ValueError, match="either model_path"):
        load_model()


def test_a_checkpoint_that_would_run_code_is_refused(trained, tmp_path):
    """load_model(config=, checkpoint=) (chat, eval, the web demo) reads the checkpoint weights-only."""
    from videoccam.checkpoint import UnsafeCheckpointError
    from videoccam.inference.load import load_model

    marker = tmp_path / "payload_ran"
    evil = write_malicious_checkpoint(tmp_path / "iter_2.pth", marker, {"state_dict": trained.model.state_dict()})
    with pytest.raises(UnsafeCheckpointError, match="posix.system"):
        load_model(config=str(STAGE2), checkpoint=str(evil), cfg_options=trained.options)
    assert not marker.exists()


def _transformers_notices(load) -> list[str]:
    """What transformers logs while ``load()`` runs (its ``warning_once`` cache cleared first)."""
    import logging

    import transformers  # noqa: F401 - configures the "transformers" logger and its warning_once

    logging.Logger.warning_once.cache_clear()
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("transformers").addHandler(handler)
    try:
        load()
    finally:
        logging.getLogger("transformers").removeHandler(handler)
    return [r.getMessage() for r in records]


def test_a_folder_loads_with_the_pil_image_processor_chosen_explicitly(hf_dir):
    """Training resizes with PIL bicubic (the slow SiglipImageProcessor): the loaders pick it by name, so
    transformers' "Using a slow image processor as `use_fast` is unset" notice is gone."""
    from transformers import AutoImageProcessor, SiglipImageProcessor

    from videoccam.inference.load import load_image_processor, load_model

    control = _transformers_notices(lambda: AutoImageProcessor.from_pretrained(hf_dir))
    assert any("use_fast` is unset" in m for m in control), control  # the notice this replaces
    notices = _transformers_notices(lambda: load_model(hf_dir))
    assert not any("slow image processor" in m or "use_fast" in m for m in notices), notices
    assert type(load_image_processor(hf_dir)) is SiglipImageProcessor
