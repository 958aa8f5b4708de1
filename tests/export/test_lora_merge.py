"""videoccam/export/lora_merge.py: merged weights equal peft's own merge, on copies or in place."""

from __future__ import annotations

import copy

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

from videoccam.export.lora_merge import base_model, merged_state_dict


def _lora_llm(tiny_models):
    torch.manual_seed(0)
    llm = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_models / "qwen2"),
                         LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "down_proj"]))
    with torch.no_grad():
        for name, p in llm.named_parameters():
            if "lora_" in name:
                p.add_(torch.randn_like(p) * 0.1)
    return llm


def test_merged_state_dict_equals_peft_merge_and_unload(tiny_models):
    llm = _lora_llm(tiny_models)
    reference = copy.deepcopy(llm).merge_and_unload().state_dict()
    before = {k: v.clone() for k, v in llm.state_dict().items()}
    merged = merged_state_dict(llm)
    assert list(merged) == list(reference)  # the base model's keys, no lora_* / base_layer left
    for key, value in reference.items():
        torch.testing.assert_close(merged[key], value, rtol=0, atol=1e-6, msg=key)
    for key, value in llm.state_dict().items():  # on copies: the model is unchanged
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)

    in_place = merged_state_dict(llm, inplace=True)
    for key, value in reference.items():
        torch.testing.assert_close(in_place[key], value, rtol=0, atol=1e-6, msg=key)


def test_plain_models_pass_through(tiny_models):
    plain = AutoModelForCausalLM.from_pretrained(tiny_models / "qwen2")
    assert base_model(plain) is plain
    state = merged_state_dict(plain)
    assert all(state[k].data_ptr() == v.data_ptr() for k, v in plain.state_dict().items())
    assert base_model(_lora_llm(tiny_models)).__class__.__name__ == "Qwen2ForCausalLM"
