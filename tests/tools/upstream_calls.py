"""Upstream's calls of a Video-CCAM model, without Gradio or GPUs: run as a script in a process without ``videoccam``.

    python upstream_calls.py OUT_JSON [--demo FOLDER ...] [--projector PROJECTOR_FOLDER ...]

``--demo``: the model calls of upstream's Gradio demo on a single-folder model (v1.2 format). Adapted from
QQ-MM/Video-CCAM ``web_demo.py`` (commit 5f36c04446c1ac24f8df9cd698c108f1e845f3ed): the loading
(``AutoTokenizer`` / ``AutoImageProcessor`` / ``AutoModel`` with ``trust_remote_code``; float32 on the CPU instead
of its bfloat16 + ``device_map`` + flash-attention defaults), the generation defaults read from
``model.generation_config`` for its panel, and its ``chat()`` handler: every file's frames through the image
processor at once, cast to ``model.vision_encoder``'s input-embedding dtype, ``<image>`` prepended for each file
without a tag, ``tokenizer.apply_chat_template([user message], tokenize=True, ...)``, and ``model.generate(
input_ids=[ids], pixel_values=..., vision_split_sizes=..., past_key_values=..., ...)`` returning
``(output_ids, past_key_values)`` with the cache carried across turns. Files are lists of PIL frames made here
(decord is not needed). The sequence: a video and a question, a follow-up without media, then one message with
two videos. Then a few values to compare across transformers versions (:func:`consistency_checks`).

``--projector``: a ``projector/`` folder of xtuner's layout as upstream's v1.0 loader uses it (``model/videoccam.py``
at tag v1.0): ``AutoModel.from_pretrained(folder, trust_remote_code=True)``, called ``projector(features,
split_sizes)`` on fixed random features.

Writes ``{"demo": {folder: ...}, "projector": {folder: ...}, "videoccam_imported": ...}`` as JSON.
"""

import json
import sys

import numpy as np
import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoModel, AutoTokenizer, DynamicCache


def frames(n, seed, size):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(n)]


def demo(model_path):
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    image_processor = AutoImageProcessor.from_pretrained(model_path)
    videoccam = AutoModel.from_pretrained(model_path, trust_remote_code=True, torch_dtype=torch.float32)
    past_key_values = DynamicCache()
    panel = dict(  # the demo's generation panel starts from these
        do_sample=videoccam.generation_config.do_sample,
        max_new_tokens=6,
        num_beams=videoccam.generation_config.num_beams,
        temperature=videoccam.generation_config.temperature,
        top_k=videoccam.generation_config.top_k,
        top_p=videoccam.generation_config.top_p,
        repetition_penalty=videoccam.generation_config.repetition_penalty,
    )
    size = image_processor.size["height"]
    video1, video2 = frames(4, 1, size), frames(3, 2, size)
    turns = [
        {"text": "What happens in the video?", "files": [video1]},
        {"text": "What appears first?", "files": []},
        {"text": "<video>\n<video>\nWhich video is longer?", "files": [video1, video2]},
    ]
    seen = []
    for message in turns:
        pixel_values, vision_split_sizes = [], []
        for file in message["files"]:
            pixel_values += file
            vision_split_sizes.append(len(file))
        vision_count = message["text"].count("<image>") + message["text"].count("<video>")
        if vision_count < len(vision_split_sizes):
            message["text"] = "<image>" * (len(vision_split_sizes) - vision_count) + message["text"]
        input_ids = tokenizer.apply_chat_template(
            [dict(role="user", content=message["text"])], tokenize=True, add_generation_prompt=True,
            return_dict=False,
        )
        if len(pixel_values) > 0:
            pixel_values = image_processor(pixel_values, return_tensors="pt")["pixel_values"].to(
                dtype=videoccam.vision_encoder.get_input_embeddings().weight.dtype,
                device=videoccam.vision_encoder.get_input_embeddings().weight.device,
            )
        else:
            pixel_values = None
        output_ids, past_key_values = videoccam.generate(
            input_ids=[input_ids], pixel_values=pixel_values, vision_split_sizes=vision_split_sizes,
            past_key_values=past_key_values, **panel,
        )
        seen.append({
            "input_ids": list(input_ids),
            "media": len(vision_split_sizes),
            "output_ids": [int(i) for i in output_ids],
            "reply": tokenizer.decode(output_ids, skip_special_tokens=True),
            "cache_length": int(past_key_values.get_seq_length()),
        })
    checks = consistency_checks(videoccam, tokenizer, image_processor, video1, video2)
    return {"turns": seen, "checks": checks, "model_module": type(videoccam).__module__}


def projector(folder):
    module = AutoModel.from_pretrained(folder, trust_remote_code=True, torch_dtype=torch.float32).eval()
    width = json.load(open(folder + "/config.json"))["cross_hidden_size"]
    features = torch.randn(5, 16, width, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = module(features, [3, 2])
    return {"out": out.tolist(), "class": type(module).__name__, "module": type(module).__module__}


def run(out_path, demo_folders=(), projector_folders=()):
    result = {
        "demo": {str(folder): demo(str(folder)) for folder in demo_folders},
        "projector": {str(folder): projector(str(folder)) for folder in projector_folders},
        "videoccam_imported": any(m.split(".")[0] == "videoccam" for m in sys.modules),
    }
    with open(out_path, "w") as f:
        json.dump(result, f)
    return result


def consistency_checks(videoccam, tokenizer, image_processor, video, image):
    """Not the demo: values to compare across transformers versions, and the cache's meaning (two turns through
    the cache = one cache-less generation of the whole conversation), with replies forced to 5 tokens."""
    def ids_of(text):
        return tokenizer.apply_chat_template([dict(role="user", content=text)], tokenize=True,
                                             add_generation_prompt=True, return_dict=False)

    first, follow = ids_of("<video>\nWhat happens?"), ids_of("And then?")
    pixel_values = image_processor(video, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        logits = videoccam(input_ids=torch.tensor([first]), pixel_values=pixel_values,
                           vision_split_sizes=[len(video)]).logits[0, -1]
    gen = dict(do_sample=False, min_new_tokens=5, max_new_tokens=5)
    new1, cache = videoccam.generate(input_ids=[first], pixel_values=pixel_values, vision_split_sizes=[len(video)],
                                     past_key_values=DynamicCache(), **gen)
    new2, cache = videoccam.generate(input_ids=[follow], past_key_values=cache, **gen)
    whole = list(first) + [int(i) for i in new1] + list(follow)
    uncached, _ = videoccam.generate(input_ids=[whole], pixel_values=pixel_values, vision_split_sizes=[len(video)],
                                     **gen)
    chat = videoccam.chat([[dict(role="user", content="<video>\n<image>\nCompare them.")]], [[video, image[:1]]],
                          tokenizer, image_processor, max_new_tokens=5, min_new_tokens=5)
    return {"last_logits": logits.tolist(), "turn1": [int(i) for i in new1], "cached": [int(i) for i in new2],
            "uncached": [int(i) for i in uncached], "chat": chat}


def _parse(argv):
    out, demos, projectors, current = argv[0], [], [], None
    for arg in argv[1:]:
        if arg in ("--demo", "--projector"):
            current = demos if arg == "--demo" else projectors
        elif current is None:
            raise SystemExit(__doc__)
        else:
            current.append(arg)
    return out, demos, projectors


if __name__ == "__main__":
    run(*_parse(sys.argv[1:]))
