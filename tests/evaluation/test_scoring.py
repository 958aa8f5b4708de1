"""Tests of videoccam/evaluation/scoring.py: reading the option letter of a reply, scoring a replay."""

from __future__ import annotations

import pytest

from videoccam.evaluation.metrics import tally_by
from videoccam.evaluation.scoring import parse_option_letter, score_reply


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("(B)", "B"),
        ("B.", "B"),
        ("B", "B"),
        ("  C  ", "C"),
        ("Answer: C", "C"),
        ("answer: c", "C"),
        ("The answer is D", "D"),
        ("The answer is (D).", "D"),
        ("The best answer is A", "A"),
        ("Best option:(B) The red one", "B"),
        ("(A) The yellow circle.", "A"),
        ("A. The yellow circle.", "A"),
        ("B) text", "B"),
        ("b) text", "B"),
        ("b.", "B"),
        ("b", "B"),
        ("**C**", "C"),
        ("Option B", "B"),
        ("[D]", "D"),
        ("A man walks a dog.", "A"),  # upper-case first token: read as the letter (upstream does the same)
        ("a man walks a dog.", None),  # lower-case article: not an answer
        ("E", None),  # out of range for 4 options
        ("I don't know", None),
        ("The video shows a dog.", None),
        ("", None),
        ("Options are unclear", None),
        ("Sure!\nB", None),  # only the first line counts
    ],
)
def test_parse_option_letter(reply: str, expected: str | None) -> None:
    assert parse_option_letter(reply, 4) == expected


def test_parse_respects_number_of_options() -> None:
    assert parse_option_letter("D", 3) is None
    assert parse_option_letter("D", 4) == "D"
    assert parse_option_letter("F.", 6) == "F"


def test_replay_fixed_replies() -> None:
    """Replay: a fixed list of replies through scoring gives the hand-computed accuracy and unparseable count."""
    # (reply, correct letter)
    replay = [
        ("(B)", "B"),  # right
        ("B.", "C"),  # wrong
        ("Answer: C", "C"),  # right
        ("The answer is D", "D"),  # right
        ("I am not sure which one.", "A"),  # unparseable -> wrong
        ("b) the blue one", "B"),  # right
        ("A", "D"),  # wrong
    ]
    tallies = tally_by(("all", score_reply(r, a, 4)) for r, a in replay)
    t = tallies["all"]
    assert (t.correct, t.total, t.unparseable) == (4, 7, 1)
    assert t.accuracy == pytest.approx(100 * 4 / 7)
