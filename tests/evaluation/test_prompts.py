"""Tests of videoccam/evaluation/prompts.py: option formatting and the multiple-choice prompt."""

from __future__ import annotations

import pytest

from videoccam.evaluation.prompts import MC_INSTRUCTION, build_mc_prompt, format_options, mc_question_block


def test_format_options_and_prompt() -> None:
    assert format_options(["x", "y"]) == "(A) x\n(B) y"
    assert format_options(["x", "y"], style="dot") == "A. x\nB. y"
    with pytest.raises(ValueError, match="unknown option style"):
        format_options(["x"], style="roman")
    block = mc_question_block("What?", ["x", "y"])
    assert block == "Question: What?\nOptions:\n(A) x\n(B) y"
    assert build_mc_prompt(block) == f"<video>\n{block}\n{MC_INSTRUCTION}"
    assert build_mc_prompt(block, preamble="P") == f"<video>\nP\n{block}\n{MC_INSTRUCTION}"
    assert MC_INSTRUCTION == "Answer with the option's letter from the given choices directly."
