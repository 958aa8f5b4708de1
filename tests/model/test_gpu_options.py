"""videoccam/model/gpu_options.py: GPU-only settings are read from builder dicts and refused on CPU with the fix."""

from __future__ import annotations

import pytest
import torch
from transformers import BitsAndBytesConfig

from videoccam.model.gpu_options import check_gpu_only_options, requested_quantization_bits


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the failure on a machine without CUDA")
def test_flash_attention_on_cpu_fails_with_what_to_change():
    with pytest.raises(RuntimeError, match=r"model.llm.attn_implementation=sdpa"):
        check_gpu_only_options(dict(attn_implementation="flash_attention_2"), "model.llm")
    with pytest.raises(RuntimeError, match="QLoRA needs a CUDA GPU"):
        check_gpu_only_options(dict(load_in_8bit=True), "model.llm")
    check_gpu_only_options(dict(attn_implementation="sdpa", quantization_config=None), "model.llm")


def test_requested_quantization_bits_reads_settings_not_names():
    assert requested_quantization_bits(dict(pretrained_model_name_or_path="x-4bit")) is None
    assert requested_quantization_bits(dict(load_in_8bit=True)) == 8
    assert requested_quantization_bits(dict(quantization_config=dict(type=BitsAndBytesConfig, load_in_4bit=True))) == 4
    assert requested_quantization_bits(dict(quantization_config=BitsAndBytesConfig(load_in_8bit=True))) == 8
    assert requested_quantization_bits(torch.nn.Linear(1, 1)) is None  # a built module is not checked
