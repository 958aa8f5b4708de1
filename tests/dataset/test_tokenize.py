"""videoccam/dataset/tokenize.py gives xtuner's ids and labels (template_map_fn + encode_fn), batched, and
extends them to several placeholders per turn."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path

import pytest
from transformers import AutoTokenizer
from xtuner.dataset.map_fns import template_map_fn
from xtuner.dataset.utils import encode_fn, get_bos_eos_token_ids
from xtuner.utils import PROMPT_TEMPLATE

from tests.dataset import corpus
from videoccam.dataset.records import RecordError, load_records, parse_record
from videoccam.dataset.tokenize import (
    apply_template,
    bos_eos_token_ids,
    labels_from_spans,
    tokenize_sample,
    tokenize_samples,
)
from videoccam.model.hf.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX

TEMPLATES = ("qwen_chat", "phi3_chat", "default", "llama3_chat", "vicuna")


@pytest.fixture(scope="module", params=["qwen2", "phi3"])
def tokenizer(request, tiny_models):
    return AutoTokenizer.from_pretrained(str(tiny_models / request.param))


def xtuner_tokens(sample, tokenizer, template) -> dict:
    """The old path: xtuner's template_map_fn and encode_fn (one placeholder per turn at most)."""
    example = template_map_fn({"conversation": copy.deepcopy(sample.conversation)}, template)
    return encode_fn(example, tokenizer, max_length=10**9, with_image_token=bool(sample.media))


def _random_records(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    words = "the red square appears first then a green circle {x} moves left, right! <|im_end|> é 漢字 </s>".split()

    def text(k: int) -> str:
        return " ".join(rng.choice(words) for _ in range(k))

    records = []
    for _ in range(n):
        kind = rng.choice(["video", "image", "text"])
        turns = [{"from": "system", "value": text(4)}] if rng.random() < 0.3 else []
        for t in range(rng.choice([1, 1, 2, 3])):
            question = text(rng.randint(0, 9))
            if t == 0 and kind != "text":
                question = rng.choice([f"<{kind}>\n{question}", f"{question} <{kind}>", f"{question[:3]}<video>{question[3:]}"])
            turns += [{"from": "human", "value": question}, {"from": "gpt", "value": text(rng.randint(1, 12))}]
        record = {"conversations": turns}
        if kind != "text":
            record[kind] = "m"
        records.append(record)
    return records


@pytest.mark.parametrize("template_name", TEMPLATES)
def test_ids_and_labels_equal_xtuner_encode_fn(tokenizer, template_name, tmp_path_factory, synthetic_data):
    template = PROMPT_TEMPLATE[template_name]
    corpus_root = tmp_path_factory.mktemp("tok_corpus")
    corpus.build_corpus(corpus_root)
    records = _random_records(150)
    records += json.loads((synthetic_data / "train.json").read_text())  # the quickstart's data
    records += [r for r in load_records(corpus_root / "corpus.jsonl") if isinstance(r, dict)]
    samples = []
    for i, record in enumerate(records):
        try:
            samples.append(parse_record(record, i, "t", Path(".")))
        except RecordError:
            continue
    results = tokenize_samples(samples, tokenizer, template, 10**6, 4, "t")
    assert len(samples) > 150
    for sample, result in zip(samples, results):
        expected = xtuner_tokens(sample, tokenizer, template)
        assert result["input_ids"] == expected["input_ids"], sample.conversation
        assert labels_from_spans(result["input_ids"], result["spans"]) == expected["labels"]
        assert result["answer_tokens"] == sum(label != IGNORE_INDEX for label in expected["labels"])


def test_template_and_special_ids_equal_xtuner(tokenizer):
    conversation = [{"input": "<image>\nQ", "output": "A", "system": "S"}, {"input": "Q2", "output": "A2"}]
    for name in TEMPLATES:
        template = PROMPT_TEMPLATE[name]
        theirs = template_map_fn({"conversation": copy.deepcopy(conversation)}, template)["conversation"]
        keys = ("input", "output", "need_eos_token", "sep")  # what encode_fn reads
        assert apply_template(conversation, template) == [{k: turn[k] for k in keys} for turn in theirs]
    bos, eos = get_bos_eos_token_ids(tokenizer)
    assert bos_eos_token_ids(tokenizer) == (list(bos), list(eos))


def test_several_placeholders_per_turn_each_become_one_id(tokenizer):
    record = {"media": [{"video": "a"}, {"image": "b"}, {"video": "c"}],
              "conversations": [{"from": "human", "value": "<video>\nfirst <image> then"},
                                {"from": "gpt", "value": "red"}, {"from": "human", "value": "and <video>"},
                                {"from": "gpt", "value": "blue"}]}  # fmt: skip
    sample = parse_record(record, 0, "t", Path("."))
    tokens = tokenize_sample(sample, tokenizer, PROMPT_TEMPLATE.qwen_chat, 10**6, 4, "t")
    assert tokens["input_ids"].count(IMAGE_TOKEN_INDEX) == 3
    # the text around the placeholders is encoded piece by piece, as encode_fn does for one placeholder
    pieces = [tokenizer.encode(p, add_special_tokens=False) for p in
              PROMPT_TEMPLATE.qwen_chat.INSTRUCTION.format(input="<image>\nfirst <image> then", round=1).split("<image>")]
    first = bos_eos_token_ids(tokenizer)[0] + pieces[0] + [IMAGE_TOKEN_INDEX] + pieces[1] + [IMAGE_TOKEN_INDEX] + pieces[2]
    assert tokens["input_ids"][: len(first)] == first
    assert tokens["num_tokens"] == len(tokens["input_ids"]) + 3 * 3  # every item costs num_queries=4 tokens


def test_the_budget_counts_every_media_item(tokenizer):
    record = {"media": [{"video": "a"}, {"video": "b"}],
              "conversations": [{"from": "human", "value": "<video><video> compare"},
                                {"from": "gpt", "value": "the red square " * 40}]}  # fmt: skip
    sample = parse_record(record, 5, "t", Path("."))
    full = tokenize_sample(sample, tokenizer, PROMPT_TEMPLATE.qwen_chat, 10**6, 16, "t")
    max_length = full["num_tokens"] - 10
    cut = tokenize_sample(sample, tokenizer, PROMPT_TEMPLATE.qwen_chat, max_length, 16, "t")
    assert cut["truncated"] and len(cut["input_ids"]) == max_length - 2 * 15  # text budget: max_length - 2 x 15
    budget = len(cut["input_ids"])
    assert cut["input_ids"] == full["input_ids"][:budget] and cut["labels"] == full["labels"][:budget]
    assert cut["kept_answer_tokens"] == sum(label != IGNORE_INDEX for label in full["labels"][:budget])
    with pytest.raises(RecordError, match=r"record 5 \(0-based\): max_length=39 leaves no room for text after 2 x 20 "
                                          r"visual tokens; fix: raise max_length above 39"):
        tokenize_sample(sample, tokenizer, PROMPT_TEMPLATE.qwen_chat, 39, 20, "t")
