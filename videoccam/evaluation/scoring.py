"""Scoring multiple-choice replies: read the chosen option letter, compare it with the answer.

Decoding is greedy, and the reply's first token (after stripping prefixes such as "Answer:" or "The answer is")
is matched against the option letters (design.md section 7). Replies that yield no option letter are
*unparseable*: they are scored wrong, counted and listed in the results, never silently dropped.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from videoccam.evaluation.prompts import OPTION_LETTERS
from videoccam.evaluation.samples import Sample

__all__ = ["ANSWER_PREFIXES", "ScoredAnswer", "parse_option_letter", "score_reply", "score_samples"]

# Prefixes removed (case-insensitively, repeatedly) before the first token is read. Longest first.
ANSWER_PREFIXES = (
    "the best answer is",
    "the correct answer is",
    "the best option is",
    "the correct option is",
    "the answer is",
    "answer is",
    "best answer:",
    "best option:",
    "correct answer:",
    "answer:",
    "option:",
    "option",
)
# Characters stripped around the first token: brackets, punctuation, markdown emphasis, quotes.
_TOKEN_STRIP = "()[]{}<>.,:;!?*_'\"`"
_LOWER_LETTER_DELIMITED = re.compile(r"^([a-z])\s*[).:]")


def parse_option_letter(reply: str, num_options: int) -> str | None:
    """Read the chosen option letter from a model reply.

    Only the first line is read. Known answer prefixes ("Answer:", "The answer is", ...) are removed, then the first
    whitespace-separated token is stripped of brackets and punctuation and must be a single option letter.

    * ``"(B)"``, ``"B."``, ``"B"``, ``"B) text"``, ``"Answer: C"``, ``"The answer is D."``, ``"**A**"`` -> letter.
    * An upper-case letter is accepted even when followed by text (``"A man walks"`` -> "A", as upstream does).
    * A lower-case letter is accepted only when it stands alone or is directly followed by ``)``, ``.`` or ``:``
      (``"b) text"`` -> "B"), so that the article in ``"a man walks"`` is not read as option A.
    * A letter outside the first ``num_options`` letters is not an answer.

    Args:
        reply: Model reply.
        num_options: Number of options of the question.

    Returns:
        The upper-case option letter, or None when the reply is unparseable.
    """
    valid = OPTION_LETTERS[:num_options]
    text = reply.strip().split("\n", 1)[0].strip() if reply else ""
    changed = True
    while changed and text:
        changed = False
        lowered = text.lower().lstrip(_TOKEN_STRIP + " ")
        offset = len(text) - len(lowered)
        for prefix in ANSWER_PREFIXES:
            if lowered.startswith(prefix):
                rest = text[offset + len(prefix):]
                # "option" must be a whole word ("options" / "optional" are not prefixes).
                if prefix == "option" and rest[:1].isalpha():
                    continue
                text = rest.strip()
                changed = True
                break
    if not text:
        return None
    head = text.lstrip(_TOKEN_STRIP + " ")
    lower_match = _LOWER_LETTER_DELIMITED.match(head)
    token = head.split(maxsplit=1)[0].strip(_TOKEN_STRIP) if head.split() else ""
    if len(token) == 1 and token.isupper() and token in valid:
        return token
    if len(token) == 1 and token.islower():
        stands_alone = len(head.split()) == 1
        if (stands_alone or lower_match) and token.upper() in valid:
            return token.upper()
    return None


@dataclass
class ScoredAnswer:
    """Result of scoring one multiple-choice reply."""

    pred: str | None
    correct: bool

    @property
    def parsed(self) -> bool:
        """Whether an option letter was found in the reply."""
        return self.pred is not None


def score_reply(reply: str, answer: str, num_options: int) -> ScoredAnswer:
    """Score a reply against the correct option letter (unparseable replies are wrong)."""
    pred = parse_option_letter(reply, num_options)
    return ScoredAnswer(pred=pred, correct=pred is not None and pred == answer)


def score_samples(
    samples: Sequence[Sample], replies: dict[str, str]
) -> tuple[list[tuple[Sample, ScoredAnswer]], list[dict[str, str]], list[str]]:
    """Score every sample that has a reply.

    Returns:
        ``(scored, unparseable, missing)``: (sample, score) pairs, ``{"uid", "reply"}`` of the replies with no
        option letter (scored wrong, listed so they are not lost), and the uids with no reply yet.
    """
    scored, unparseable, missing = [], [], []
    for s in samples:
        if s.uid not in replies:
            missing.append(s.uid)
            continue
        result = score_reply(replies[s.uid], s.answer, s.num_options)
        scored.append((s, result))
        if not result.parsed:
            unparseable.append({"uid": s.uid, "reply": replies[s.uid]})
    return scored, unparseable, missing
