"""Accuracy bookkeeping: correct / total / unparseable per group of questions, and micro / macro averages."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from videoccam.evaluation.scoring import ScoredAnswer

__all__ = ["Tally", "macro_average", "micro_average", "tallies_to_dict", "tally_by"]


@dataclass
class Tally:
    """Correct / total / unparseable counts of a group of questions."""

    correct: int = 0
    total: int = 0
    unparseable: int = 0

    def add(self, scored: ScoredAnswer) -> None:
        """Count one scored answer."""
        self.total += 1
        self.correct += int(scored.correct)
        self.unparseable += int(not scored.parsed)

    @property
    def accuracy(self) -> float:
        """Accuracy in percent (NaN for an empty group)."""
        return 100.0 * self.correct / self.total if self.total else math.nan

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "accuracy": self.accuracy,
            "correct": self.correct,
            "total": self.total,
            "unparseable": self.unparseable,
        }


def tally_by(items: Iterable[tuple[str, ScoredAnswer]], order: Sequence[str] = ()) -> dict[str, Tally]:
    """Group scored answers by key.

    Args:
        items: ``(group key, scored answer)`` pairs.
        order: Keys listed first, in this order (present even when empty); other keys follow in first-seen order.

    Returns:
        Key -> tally.
    """
    tallies: dict[str, Tally] = {key: Tally() for key in order}
    for key, scored in items:
        tallies.setdefault(key, Tally()).add(scored)
    return tallies


def micro_average(tallies: Mapping[str, Tally]) -> Tally:
    """Pool all groups (accuracy = all correct / all questions)."""
    pooled = Tally()
    for t in tallies.values():
        pooled.correct += t.correct
        pooled.total += t.total
        pooled.unparseable += t.unparseable
    return pooled


def macro_average(tallies: Mapping[str, Tally]) -> float:
    """Mean of the per-group accuracies over non-empty groups, in percent (NaN if all are empty)."""
    accs = [t.accuracy for t in tallies.values() if t.total]
    return sum(accs) / len(accs) if accs else math.nan


def tallies_to_dict(tallies: Mapping[str, Tally]) -> dict[str, dict[str, Any]]:
    """JSON-ready form of a key -> tally mapping."""
    return {k: t.to_dict() for k, t in tallies.items()}
