"""Tests of videoccam/evaluation/metrics.py: micro and macro averages of tallies."""

from __future__ import annotations

import math

import pytest

from videoccam.evaluation.metrics import Tally, macro_average, micro_average


def test_micro_vs_macro_average() -> None:
    tallies = {"a": Tally(correct=3, total=3), "b": Tally(correct=0, total=1), "c": Tally()}
    assert micro_average(tallies).accuracy == pytest.approx(75.0)
    assert macro_average(tallies) == pytest.approx(50.0)  # empty group "c" ignored
    assert math.isnan(Tally().accuracy)
