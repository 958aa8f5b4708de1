"""The multiple-choice prompt of every benchmark here (design.md section 7, from the upstream Video-CCAM evaluation).

The user turn is ``<video>\\n[preamble\\n]{question}\\n{options}\\n{MC_INSTRUCTION}``; options are lettered
``(A) text`` (MVBench, MLVU, VideoVista) or ``A. text`` (Video-MME).

Notation: an option *letter* is "A", "B", ...; an option *text* is what follows it.
"""

from __future__ import annotations

import string
from collections.abc import Sequence

from videoccam.model.hf.constants import VIDEO_TOKEN

__all__ = ["MC_INSTRUCTION", "OPTION_LETTERS", "build_mc_prompt", "format_options", "mc_question_block",
           "option_letter"]

MC_INSTRUCTION = "Answer with the option's letter from the given choices directly."
OPTION_LETTERS = string.ascii_uppercase


def option_letter(index: int) -> str:
    """Letter of the ``index``-th option (0 -> "A").

    Raises:
        ValueError: If there are more options than letters.
    """
    if not 0 <= index < len(OPTION_LETTERS):
        raise ValueError(f"option index {index} out of range: at most {len(OPTION_LETTERS)} options are supported")
    return OPTION_LETTERS[index]


def format_options(options: Sequence[str], style: str = "paren") -> str:
    """Format option texts one per line.

    Args:
        options: Option texts in order.
        style: ``"paren"`` gives ``(A) text`` (MVBench, MLVU, VideoVista); ``"dot"`` gives ``A. text`` (Video-MME).

    Returns:
        The options joined by newlines.

    Raises:
        ValueError: On an unknown style.
    """
    if style == "paren":
        return "\n".join(f"({option_letter(i)}) {text}" for i, text in enumerate(options))
    if style == "dot":
        return "\n".join(f"{option_letter(i)}. {text}" for i, text in enumerate(options))
    raise ValueError(f"unknown option style {style!r}; expected 'paren' or 'dot'")


def mc_question_block(question: str, options: Sequence[str]) -> str:
    """The upstream MVBench/MLVU question block: ``Question: q\\nOptions:\\n(A) ...``."""
    return f"Question: {question}\nOptions:\n{format_options(options)}"


def build_mc_prompt(question_block: str, preamble: str = "") -> str:
    """Build the user text of a multiple-choice question.

    Args:
        question_block: Question and options (already formatted).
        preamble: Text placed between the ``<video>`` line and the question (subtitles, benchmark instruction).

    Returns:
        ``<video>\\n[preamble\\n]{question_block}\\n{MC_INSTRUCTION}``.
    """
    parts = [VIDEO_TOKEN]
    if preamble:
        parts.append(preamble)
    parts += [question_block, MC_INSTRUCTION]
    return "\n".join(parts)
