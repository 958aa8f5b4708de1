"""videoccam/synthetic/replica_code/modeling_videoccam.py: the replica v1.2 model, loaded as upstream loads v1.2
(``AutoModel.from_pretrained(folder, trust_remote_code=True)``), answers through its own ``chat`` and
``generate(input_ids=[ids], pixel_values, vision_split_sizes, past_key_values)``."""

import torch
from transformers import AutoImageProcessor, AutoModel, AutoTokenizer, DynamicCache

from tests.export.helpers import frames


def test_loads_with_its_own_code_and_answers(released_replicas):
    folder = released_replicas["v1_2"]
    model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    tokenizer, processor = AutoTokenizer.from_pretrained(folder), AutoImageProcessor.from_pretrained(folder)
    assert type(model).__name__ == "VideoCCAM" and type(model).__module__.startswith("transformers_modules")
    assert {name for name, _ in model.named_children()} == {"vision_encoder", "mm_projector", "language_model"}
    video = frames(3, 0)
    replies = model.chat([[{"role": "user", "content": "<video>\nWhat happens?"}]], [video], tokenizer, processor,
                         max_new_tokens=3, do_sample=False)
    assert len(replies) == 1
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "<video>\nWhat happens?"}], tokenize=True,
                                        add_generation_prompt=True)
    pixel_values = processor(video, return_tensors="pt")["pixel_values"]
    new, cache = model.generate(input_ids=[ids], pixel_values=pixel_values, vision_split_sizes=[3],
                                past_key_values=DynamicCache(), max_new_tokens=3, do_sample=False)
    assert new.dim() == 1 and cache.get_seq_length() > len(ids)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids]), pixel_values=pixel_values, vision_split_sizes=[3]).logits
    assert logits.shape[1] == len(ids) - 1 + 16
