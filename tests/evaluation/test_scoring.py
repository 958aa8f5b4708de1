"""Tests of videoccam/evaluation/common.py: answer parsing, option formatting, metrics helpers, the store."""

from __future__ import annotations

import json
import math

import pytest

from videoccam.evaluation.common import (
    MC_INSTRUCTION,
    PredictionStore,
    Tally,
    build_mc_prompt,
    format_options,
    format_table,
    macro_average,
    mc_question_block,
    micro_average,
    parse_option_letter,
    score_reply,
    tally_by,
    write_json,
)


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


def test_micro_vs_macro_average() -> None:
    tallies = {"a": Tally(correct=3, total=3), "b": Tally(correct=0, total=1), "c": Tally()}
    assert micro_average(tallies).accuracy == pytest.approx(75.0)
    assert macro_average(tallies) == pytest.approx(50.0)  # empty group "c" ignored
    assert math.isnan(Tally().accuracy)


def test_store_append_resume_and_truncated_tail(tmp_path) -> None:
    path = tmp_path / "p" / "predictions_f8.jsonl"
    store = PredictionStore(path, 8)
    store.add_many([{"variant": "default", "uid": "q1", "reply": "A"},
                    {"variant": "default", "uid": "q2", "reply": "B"}])
    # Simulate a crash in the middle of writing a third record.
    with open(path, "a", encoding="utf-8") as f:
        f.write('{"variant": "default", "uid": "q3", "rep')
    reopened = PredictionStore(path, 8)
    assert len(reopened) == 2 and ("default", "q2") in reopened and ("default", "q3") not in reopened
    reopened.add_many([{"variant": "default", "uid": "q3", "reply": "C"}])
    lines = path.read_text().splitlines()
    assert [json.loads(x)["uid"] for x in lines] == ["q1", "q2", "q3"]
    assert PredictionStore(path, 8).get("default", "q3")["reply"] == "C"


def test_store_rejects_other_frame_count_and_garbage(tmp_path) -> None:
    path = tmp_path / "predictions_f8.jsonl"
    PredictionStore(path, 8).add_many([{"variant": "default", "uid": "q1", "reply": "A"}])
    with pytest.raises(ValueError, match="record for 8 frames in the store of 16 frames"):
        PredictionStore(path, 16)
    path.write_text("not json\n")
    with pytest.raises(ValueError, match="predictions_f8.jsonl:1: malformed"):
        PredictionStore(path, 8)


def test_write_json_replaces_nan(tmp_path) -> None:
    write_json(tmp_path / "r.json", {"a": math.nan, "b": [1.5, math.nan]})
    assert json.loads((tmp_path / "r.json").read_text()) == {"a": None, "b": [1.5, None]}


def test_format_table() -> None:
    text = format_table(["k", "v"], [["x", 1.234], ["y", None]])
    assert text.splitlines() == ["k     v", "-  ----", "x  1.23", "y     -"]
