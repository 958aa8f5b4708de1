"""The exported model's tokenizer and generation config, derived from the training tokenizer and prompt template.

:func:`prepare_tokenizer` adds the media tokens and a chat template that reproduces training's prompt ids
(:mod:`videoccam.export.chat_template`); :func:`make_generation_config` stops generation at the template's stop
words.
"""

from __future__ import annotations

import copy
from typing import Any

from mmengine.logging import print_log
from transformers import GenerationConfig

from videoccam.config import resolve_template
from videoccam.export.chat_template import xtuner_chat_template
from videoccam.model.hf.constants import MEDIA_TOKENS
from videoccam.xtuner_compat import make_xtuner_importable

__all__ = ["make_generation_config", "prepare_tokenizer"]


def _single_token(tokenizer: Any, ids: Any, what: str) -> str | None:
    if ids is None or ids == []:
        return None
    ids = [ids] if isinstance(ids, int) else list(ids)
    if len(ids) != 1 or ids[0] is None:
        raise ValueError(
            f"xtuner's encode_fn puts the {what} ids {ids} around each turn for {type(tokenizer).__name__}; "
            "only a single token can be written into a chat template"
        )
    return tokenizer.convert_ids_to_tokens(ids[0])


def prepare_tokenizer(tokenizer: Any, template: Any) -> Any:
    """A copy of ``tokenizer`` ready for inference with the exported model.

    Adds ``<image>``/``<video>`` as special tokens if the vocabulary lacks them (their ids are never embedded:
    ``tokenize_with_media`` splits prompts on them, so the LLM's embeddings are not resized), sets a chat
    template generated from the xtuner ``template`` (with the BOS/EOS xtuner's ``encode_fn`` adds for this
    tokenizer) and pads on the left for batched generation.

    Args:
        tokenizer: the training tokenizer.
        template: xtuner prompt template (mapping or ``PROMPT_TEMPLATE`` name).

    Returns:
        the new tokenizer; ``tokenizer`` is left unchanged.
    """
    make_xtuner_importable()  # xtuner.dataset imports torchvision (see videoccam/xtuner_compat.py)
    from xtuner.dataset.utils import get_bos_eos_token_ids

    template = resolve_template(template)
    tokenizer = copy.deepcopy(tokenizer)
    vocab = tokenizer.get_vocab()
    missing = [token for token in MEDIA_TOKENS if token not in vocab]
    if missing:
        tokenizer.add_special_tokens({"additional_special_tokens": missing}, replace_additional_special_tokens=False)
    bos_ids, eos_ids = get_bos_eos_token_ids(tokenizer)
    bos_token = _single_token(tokenizer, bos_ids, "BOS")
    eos_token = None if template.get("SUFFIX_AS_EOS", False) else _single_token(tokenizer, eos_ids, "EOS")
    tokenizer.chat_template = xtuner_chat_template(template, bos_token=bos_token, eos_token=eos_token)
    tokenizer.padding_side = "left"
    return tokenizer


def _token_id(tokenizer: Any, word: str) -> int | None:
    ids = tokenizer.encode(word, add_special_tokens=False)
    return ids[0] if len(ids) == 1 else None


def make_generation_config(tokenizer: Any, template: Any) -> GenerationConfig:
    """Generation defaults of the exported model: EOS = the template's ``STOP_WORDS`` (single tokens).

    The tokenizer's own EOS is added when the template makes the model emit it (``SUFFIX_AS_EOS`` false) or
    when no stop word is a single token. ``pad_token_id`` is the tokenizer's pad (else the first EOS).

    Raises:
        ValueError: if no stop token can be determined.
    """
    template = resolve_template(template)
    eos: list[int] = []
    for word in template.get("STOP_WORDS", None) or []:
        token_id = _token_id(tokenizer, word)
        if token_id is None:
            print_log(
                f"stop word {word!r} of the prompt template is not a single token of the tokenizer; generation will "
                "not stop on it",
                "current",
            )
        elif token_id not in eos:
            eos.append(token_id)
    needs_tokenizer_eos = not template.get("SUFFIX_AS_EOS", False) or not eos
    if needs_tokenizer_eos and tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in eos:
        eos.append(tokenizer.eos_token_id)
    if not eos:
        raise ValueError("neither the prompt template's STOP_WORDS nor the tokenizer give a single-token EOS")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    return GenerationConfig(eos_token_id=eos, pad_token_id=pad, bos_token_id=tokenizer.bos_token_id)
