"""Records to token ids and labels: the chat template, the tokeniser and the ``max_length`` budget.

This is the tokenisation of xtuner 0.2.0's LLaVA pipeline (``template_map_fn`` then ``encode_fn``), generalised
to several media placeholders per turn (``encode_fn`` asserts at most one) and batched: the texts of many
samples go to the tokenizer in one call (the Rust tokenizers encode a batch without a Python call per text).
Each piece of text is still encoded on its own, exactly as ``encode_fn`` does, so the ids are the ids xtuner
gives (``tests/dataset/test_tokenize.py`` compares them on every record of the test data).

Labels equal the input ids on the answer tokens (each answer and its end-of-turn token) and ``IGNORE_INDEX``
elsewhere, so they are kept as *answer spans*: ``[(start, end), ...]`` positions of ``input_ids``.

The index builder (:mod:`videoccam.dataset.index`) and the validator call :func:`tokenize_samples`; the
source text of this module is part of the index key, so an edit here rebuilds every index.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from videoccam.dataset.records import RecordError, Sample
from videoccam.model.hf.constants import IGNORE_INDEX, IMAGE_TOKEN, IMAGE_TOKEN_INDEX

__all__ = ["apply_template", "bos_eos_token_ids", "labels_from_spans", "tokenize_sample", "tokenize_samples"]


# Adapted from xtuner 0.2.0, xtuner/dataset/utils.py (get_bos_eos_token_ids): the same special cases.
def bos_eos_token_ids(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The BOS ids put before each turn that follows an EOS, and the EOS ids after each answer (xtuner's rule)."""
    name = type(tokenizer).__name__
    if name in ("QWenTokenizer", "QWen2Tokenizer", "Qwen2TokenizerFast"):
        bos, eos = [], tokenizer.eos_token_id
        if eos is None:
            raise ValueError("the Qwen tokenizer has no eos_token; set it (xtuner needs it too)")
    elif name == "ChatGLMTokenizer":
        bos, eos = [64790, 64792], tokenizer.eos_token_id
    else:
        bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    bos = [bos] if isinstance(bos, int) else list(bos or [])
    eos = [eos] if isinstance(eos, int) else list(eos or [])
    return bos, eos


# Adapted from xtuner 0.2.0, xtuner/dataset/map_fns/template_map_fn.py (template_map_fn), on a copy.
def apply_template(conversation: Sequence[Mapping[str, str]], template: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The turns with the template's instruction, system, suffix, EOS and separator rules applied."""
    turns = []
    for i, turn in enumerate(conversation):
        text = template["INSTRUCTION"].format(input=turn.get("input") or "", round=i + 1)
        system = turn.get("system") or ""
        if system:
            text = template["SYSTEM"].format(system=system) + text
        output = turn.get("output", "")
        if template.get("SUFFIX"):
            output += template["SUFFIX"]
        turns.append({
            "input": text,
            "output": output,
            "need_eos_token": not template.get("SUFFIX_AS_EOS", False),
            "sep": template.get("SEP", "") or "",
        })  # fmt: skip
    return turns


def _encode_texts(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    """``[tokenizer.encode(t, add_special_tokens=False) for t in texts]``, in one batched call.

    A fast tokenizer whose Rust tokenizer neither truncates nor pads is called directly (what
    ``PreTrainedTokenizerFast`` does inside, without building its per-text Python objects: ~15% of the time).
    """
    if not texts:
        return []
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if (backend is not None and backend.truncation is None and backend.padding is None
            and bool(getattr(tokenizer, "split_special_tokens", False)) == bool(backend.encode_special_tokens)):
        return [encoding.ids for encoding in backend.encode_batch(texts, add_special_tokens=False)]
    return tokenizer(texts, add_special_tokens=False, return_attention_mask=False)["input_ids"]


def labels_from_spans(input_ids: Sequence[int], spans: Sequence[tuple[int, int]]) -> list[int]:
    """Labels of ``input_ids``: the ids inside the answer spans, ``IGNORE_INDEX`` elsewhere."""
    labels = [IGNORE_INDEX] * len(input_ids)
    for start, end in spans:
        labels[start:end] = input_ids[start:end]
    return labels


def tokenize_samples(
    samples: Sequence[Sample], tokenizer: Any, template: Mapping[str, Any], max_length: int, num_queries: int,
    source: str,
) -> list[dict[str, Any] | RecordError]:
    """Apply the chat template and tokenise many samples, truncating only text after the last placeholder.

    ``max_length`` is the LLM context of a whole sample; each media item costs ``num_queries`` tokens but one
    placeholder id, so the text budget is ``max_length - n_media * (num_queries - 1)``. A sample over the
    budget is cut at its end (in the answers); it is rejected when that would cut a placeholder or leave no
    answer token. Time grows with the text of the samples; memory with one batch of their ids.

    Returns:
        One entry per sample, in order: a :class:`RecordError` (category ``too_long``) for a rejected one, else
        ``input_ids`` (truncated), ``spans`` (answer spans after truncation), ``truncated``, ``num_tokens`` (the
        untruncated LLM length, visual tokens included), ``answer_tokens`` and ``kept_answer_tokens`` (trained
        tokens before and after truncation).
    """
    bos, eos = bos_eos_token_ids(tokenizer)
    # every text of every turn, encoded in one call: [input chunks..., output] per turn, the separator once
    plans, texts = [], []
    for sample in samples:
        turns = apply_template(sample.conversation, template)
        plan = []
        for turn in turns:
            chunks = turn["input"].split(IMAGE_TOKEN) if sample.media else [turn["input"]]
            plan.append((len(texts), len(chunks), turn["need_eos_token"], turn["sep"]))
            texts.extend(chunks)
            texts.append(turn["output"])
        plans.append(plan)
    seps = sorted({sep for plan in plans for *_, sep in plan if sep})
    encoded = _encode_texts(tokenizer, texts + seps)
    sep_ids = dict(zip(seps, encoded[len(texts):]))

    results: list[dict[str, Any] | RecordError] = []
    for sample, plan in zip(samples, plans):
        ids: list[int] = []
        spans: list[tuple[int, int]] = []
        needs_bos = True
        for first, num_chunks, need_eos, sep in plan:
            if needs_bos:
                ids += bos
            for c in range(num_chunks):
                if c:
                    ids.append(IMAGE_TOKEN_INDEX)
                ids += encoded[first + c]
            start = len(ids)
            ids += encoded[first + num_chunks]  # the answer, trained
            if need_eos:
                ids += eos
            needs_bos = need_eos
            if len(ids) > start:
                spans.append((start, len(ids)))
            if sep:
                ids += sep_ids[sep]
        results.append(_fit(sample, ids, spans, max_length, num_queries, source))
    return results


def _fit(
    sample: Sample, ids: list[int], spans: list[tuple[int, int]], max_length: int, num_queries: int, source: str
) -> dict[str, Any] | RecordError:
    """Truncate one tokenised sample to its text budget, or say why it cannot be used."""
    n_media = len(sample.media)

    def fail(reason: str, fix: str) -> RecordError:
        return RecordError(source, sample.index, sample.record_id, reason, "too_long", sample.line, fix)

    budget = max_length - n_media * (num_queries - 1)
    if budget <= 1:
        return fail(f"max_length={max_length} leaves no room for text after {n_media} x {num_queries} visual tokens",
                    f"raise max_length above {n_media * (num_queries - 1) + 1}, or give the record fewer media items")
    num_tokens = len(ids) + n_media * (num_queries - 1)
    answer_tokens = sum(end - start for start, end in spans)
    truncated = len(ids) > budget
    if truncated:
        spans = [(start, min(end, budget)) for start, end in spans if start < budget]
        input_ids = ids[:budget]
    else:
        input_ids = ids
    kept = sum(end - start for start, end in spans) if truncated else answer_tokens
    if truncated and input_ids.count(IMAGE_TOKEN_INDEX) != n_media:
        return fail(
            f"too long: {num_tokens} LLM tokens > max_length={max_length}, and a media placeholder sits beyond "
            f"the text budget of {budget} tokens, so truncation would cut through the visual tokens",
            "shorten the text before the placeholder, or raise max_length",
        )
    if answer_tokens == 0:
        return fail("the answer turns tokenise to nothing (empty answers?)", "write the answers in the gpt turns")
    if kept == 0:
        return fail(
            f"too long: {num_tokens} LLM tokens > max_length={max_length}; truncating to the text budget of "
            f"{budget} tokens would remove the whole answer ({answer_tokens} tokens)",
            "shorten the question, or raise max_length",
        )
    return {
        "input_ids": input_ids,
        "spans": spans,
        "truncated": truncated,
        "num_tokens": num_tokens,
        "answer_tokens": answer_tokens,
        "kept_answer_tokens": kept,
    }


def tokenize_sample(
    sample: Sample, tokenizer: Any, template: Mapping[str, Any], max_length: int, num_queries: int, source: str
) -> dict[str, Any]:
    """:func:`tokenize_samples` of one sample, with its ``labels``.

    Raises:
        RecordError: (category ``too_long``) the visual tokens do not fit, truncation would cut through a
            placeholder, or it would remove every answer token.
    """
    (result,) = tokenize_samples([sample], tokenizer, template, max_length, num_queries, source)
    if isinstance(result, RecordError):
        raise result
    return dict(result, labels=labels_from_spans(result["input_ids"], result["spans"]))
