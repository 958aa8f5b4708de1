"""Turn an xtuner prompt template into a Hugging Face (Jinja) chat template that tokenises like training.

Training builds prompts with xtuner's ``template_map_fn`` + ``encode_fn``: for every turn ``i`` (1-based)

    [BOS if the turn needs one] + SYSTEM.format(system) (first turn, if any) + INSTRUCTION.format(input, round=i)
    + answer + SUFFIX + [EOS unless SUFFIX_AS_EOS] + SEP

where a turn needs a BOS when it is the first one or the previous turn ended with an EOS. The exported model's
``chat()`` renders ``tokenizer.apply_chat_template(messages, add_generation_prompt=True)`` and tokenises the
text with ``tokenize_with_media``. The template built here renders exactly the training text (the BOS and EOS
written as their token strings, which the tokenizer maps back to their ids), so that a prompt gets the same ids
at inference as in training. xtuner's INSTRUCTION already ends with the assistant header, so the generation
prompt is part of the user turn and ``add_generation_prompt`` adds nothing.

Imports nothing from xtuner: the template is any mapping with xtuner's keys (``PROMPT_TEMPLATE.qwen_chat``).
"""

from __future__ import annotations

import json
import string
from collections.abc import Mapping
from typing import Any

__all__ = ["xtuner_chat_template"]


def _literal(text: str) -> str:
    """A Jinja string literal whose value is ``text`` (Jinja unescapes literals like Python's unicode-escape)."""
    return json.dumps(text, ensure_ascii=False)


def _format_expression(pattern: str, fields: Mapping[str, str], key: str) -> str:
    """Jinja expression equal to ``pattern.format(**values)``, with each field bound to a Jinja expression.

    Raises:
        ValueError: if ``pattern`` uses a field that is not in ``fields`` or a format spec / conversion.
    """
    parts: list[str] = []
    for literal, field, spec, conversion in string.Formatter().parse(pattern):
        if literal:
            parts.append(_literal(literal))
        if field is None:
            continue
        if field not in fields or spec or conversion:
            raise ValueError(
                f"prompt template {key}={pattern!r} uses the field {{{field}}}"
                f"{'!' + conversion if conversion else ''}{':' + spec if spec else ''}; only "
                f"{', '.join('{' + f + '}' for f in fields)} can be turned into a chat template"
            )
        parts.append(f"({fields[field]} | string)")
    return " ~ ".join(parts) if parts else '""'


def xtuner_chat_template(template: Mapping[str, Any], bos_token: str | None, eos_token: str | None) -> str:
    """Build a Jinja chat template that renders conversations as xtuner's ``template_map_fn``/``encode_fn`` do.

    Args:
        template: an xtuner prompt template (keys ``SYSTEM``, ``INSTRUCTION``, optional ``SUFFIX``,
            ``SUFFIX_AS_EOS``, ``SEP``).
        bos_token: the BOS token string xtuner's ``encode_fn`` puts before a turn (None when it puts none, as for
            Qwen tokenizers).
        eos_token: the EOS token string ``encode_fn`` appends after each answer when ``SUFFIX_AS_EOS`` is false
            (required then; ignored otherwise).

    Returns:
        The template source. Messages are ``{"role": "system" | "user" | "assistant", "content": str}``; a
        system message may only come first, and user and assistant messages alternate starting with the user.

    Raises:
        ValueError: if the template has no ``INSTRUCTION``, uses format fields other than ``{system}``,
            ``{input}``, ``{round}``, or needs an EOS token that the tokenizer does not have.
    """
    instruction = template.get("INSTRUCTION")
    if not instruction:
        raise ValueError(f"the prompt template has no INSTRUCTION: {dict(template)!r}")
    system = template.get("SYSTEM") or ""
    suffix = template.get("SUFFIX") or ""
    sep = template.get("SEP") or ""
    suffix_as_eos = bool(template.get("SUFFIX_AS_EOS", False))
    if not suffix_as_eos and not eos_token:
        raise ValueError(
            "the prompt template appends the tokenizer's EOS token after each answer (SUFFIX_AS_EOS is false) but "
            "the tokenizer has no eos_token; set one on the tokenizer before exporting"
        )

    system_expr = _format_expression(system, {"system": "ns.system"}, "SYSTEM") if system else None
    user_expr = _format_expression(instruction, {"input": "message['content']", "round": "ns.round"}, "INSTRUCTION")
    answer_tail = suffix + ("" if suffix_as_eos else eos_token) + sep

    src = [
        "{%- set ns = namespace(system='', round=0, bos=true, expect='user') -%}",
        "{%- for message in messages -%}",
        "{%- if message['role'] == 'system' -%}",
        "{%- if not loop.first -%}{{ raise_exception('a system message may only come first') }}{%- endif -%}",
    ]
    if system_expr is None:
        src.append(
            "{%- if message['content'] -%}"
            "{{ raise_exception('this model was trained with a prompt template without a system prompt') }}"
            "{%- endif -%}"
        )
    src += [
        "{%- set ns.system = message['content'] -%}",
        "{%- elif message['role'] == 'user' -%}",
        (
            "{%- if ns.expect != 'user' -%}"
            "{{ raise_exception('user and assistant messages must alternate, starting with the user') }}"
            "{%- endif -%}"
        ),
        "{%- set ns.round = ns.round + 1 -%}",
    ]
    if bos_token:
        src.append("{%- if ns.bos -%}{{ " + _literal(bos_token) + " }}{%- endif -%}")
    if system_expr is not None:
        src.append("{%- if ns.system -%}{{ " + system_expr + " }}{%- set ns.system = '' -%}{%- endif -%}")
    src += [
        "{{ " + user_expr + " }}",
        "{%- set ns.expect = 'assistant' -%}",
        "{%- elif message['role'] == 'assistant' -%}",
        (
            "{%- if ns.expect != 'assistant' -%}"
            "{{ raise_exception('user and assistant messages must alternate, starting with the user') }}"
            "{%- endif -%}"
        ),
        "{{ message['content'] ~ " + _literal(answer_tail) + " }}",
        "{%- set ns.bos = " + ("false" if suffix_as_eos else "true") + " -%}",
        "{%- set ns.expect = 'user' -%}",
        "{%- else -%}",
        "{{ raise_exception('unknown message role ' ~ message['role'] ~ '; expected system, user or assistant') }}",
        "{%- endif -%}",
        "{%- endfor -%}",
    ]
    return "".join(src)
