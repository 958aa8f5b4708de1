"""videoccam/export/chat_template.py: the exported chat template gives the prompt ids training used."""

from __future__ import annotations

import pytest

from tests.export.helpers import KINDS, inference_ids, training_prompt_ids


@pytest.mark.parametrize("kind", list(KINDS))
def test_chat_template_reproduces_training_prompt_ids(loaded, trained, kind):
    model, tokenizer, _ = loaded
    expected = training_prompt_ids(kind, trained.tokenizer, trained.template, trained.cfg.num_queries)
    assert inference_ids(kind, tokenizer, model) == expected


@pytest.mark.parametrize("llm, template", [("phi3", "phi3_chat"), ("phi3", "vicuna"), ("qwen2", "qwen_chat")])
def test_chat_template_matches_training_with_bos_system_and_history(tiny_models, llm, template):
    """Multi-turn + system prompt, with a BOS-adding tokenizer (phi3) and a template that ends answers with EOS."""
    import copy

    from transformers import AutoTokenizer
    from xtuner.dataset.map_fns import template_map_fn
    from xtuner.dataset.utils import encode_fn
    from xtuner.utils import PROMPT_TEMPLATE

    from videoccam.export.tokenizer import prepare_tokenizer
    from videoccam.model.hf.constants import IGNORE_INDEX
    from videoccam.model.hf.modeling_videoccam import tokenize_with_media

    tokenizer = AutoTokenizer.from_pretrained(tiny_models / llm)
    tmpl = PROMPT_TEMPLATE[template]
    turns = [{"system": "You watch videos.", "input": "<image>\nWhat moves?", "output": "A red square."},
             {"input": "And then?", "output": "A blue circle."}]
    example = template_map_fn({"conversation": copy.deepcopy(turns)}, tmpl)
    tokens = encode_fn(example, tokenizer, 10**6, with_image_token=True)
    labels = tokens["labels"]
    # the prompt of turn 2 = everything before its first supervised token
    starts = [i for i in range(len(labels)) if labels[i] != IGNORE_INDEX and (i == 0 or labels[i - 1] == IGNORE_INDEX)]
    expected = tokens["input_ids"][: starts[-1]]

    prepared = prepare_tokenizer(tokenizer, tmpl)
    messages = [{"role": "system", "content": "You watch videos."},
                {"role": "user", "content": "<video>\nWhat moves?"}, {"role": "assistant", "content": "A red square."},
                {"role": "user", "content": "And then?"}]
    text = prepared.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert tokenize_with_media(text, prepared, ["<image>", "<video>"]) == expected
