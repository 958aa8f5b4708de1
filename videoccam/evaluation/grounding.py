"""Does a trained model use its frames? Frame-ablation losses and answer accuracy on held-out QA data.

A falling training loss is not proof that a video-language model looks at its video: the loss can fall on text
priors alone while the visual path carries nothing. Two checks here show whether it does:

* :func:`frame_ablation_losses`: the mean answer-token loss on held-out samples with their real frames, with the
  frames of *another* sample (``shuffled``: a fixed derangement over the media samples) and with blank frames
  (``blank``: uniform mid-grey: 128 for the dataset's uint8 frames, 0 for normalised ones). A model that uses
  its input has a clearly lower loss with the real frames than with either of the others.
* :func:`answer_accuracy`: greedy replies to the questions, per ``task`` field of the records, each scored by what
  carries its answer: :class:`ContentWords` (the answer's words of given vocabularies, e.g. colour and shape:
  ``"Green square"`` is right and ``"The red circle."`` wrong against ``"The green square."``) or
  :class:`ExactMatch` (the whole answer after normalisation, for answers of any vocabulary). The report names the
  rule of each task.

:func:`check_grounding` turns both into pass / fail messages (the quickstart's gate).

Notation: b samples of a batch, l tokens, f frames of all media in the batch.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from tqdm import tqdm

from videoccam.evaluation.backend import VideoQABackend
from videoccam.evaluation.metrics import Tally
from videoccam.model.hf.constants import IGNORE_INDEX

FRAME_CONDITIONS: tuple[str, ...] = ("real", "shuffled", "blank")
MIN_RELATIVE_GAP = 0.5
"""The gate: the real-frame loss is at most half the shuffled- and the blank-frame loss."""
MIN_ACCURACY_OVER_CHANCE = 2.0
"""The gate: the pooled content accuracy is at least twice chance."""
MIN_TASK_OVER_CHANCE = 2.0
"""The gate: every content task's accuracy is at least twice its chance."""


def derangement(n: int, seed: int = 0) -> list[int]:
    """A seeded permutation of ``range(n)`` with no fixed point (``n >= 2``): item i gets item ``perm[i]``'s frames.

    Raises:
        ValueError: If ``n < 2`` (one item cannot be given another item's frames).
    """
    if n < 2:
        raise ValueError(f"shuffling frames across samples needs at least 2 media samples, got {n}")
    rng = random.Random(seed)
    while True:
        perm = list(range(n))
        rng.shuffle(perm)
        if all(i != j for i, j in enumerate(perm)):
            return perm


def _fit_frames(frames: torch.Tensor, count: int) -> torch.Tensor:
    """``frames`` [t, 3, h, w] cycled or cut to ``count`` frames (shuffled frames keep each sample's frame count)."""
    if frames.shape[0] == count:
        return frames
    return frames[torch.arange(count) % frames.shape[0]]


def ablate_frames(items: Sequence[Mapping[str, Any]], condition: str, seed: int = 0) -> list[dict[str, Any]]:
    """Dataset items with their ``pixel_values`` replaced according to ``condition``.

    Args:
        items: Training-dataset items (``input_ids``, ``labels`` and, for media samples, ``pixel_values``
            [t, 3, h, w]).
        condition: ``real`` (unchanged), ``shuffled`` (every media sample gets another media sample's frames,
            cycled or cut to its own frame count) or ``blank`` (uniform mid-grey: 128 for uint8 frames, 0 for
            normalised ones).
        seed: Seed of the ``shuffled`` derangement.

    Returns:
        New item dicts (the inputs are not modified).

    Raises:
        ValueError: On an unknown condition, or ``shuffled`` with fewer than two media samples.
    """
    if condition not in FRAME_CONDITIONS:
        raise ValueError(f"unknown frame condition {condition!r}; expected one of {FRAME_CONDITIONS}")
    out = [dict(item) for item in items]
    media = [i for i, item in enumerate(items) if "pixel_values" in item]
    if condition == "shuffled":
        for i, j in zip(media, (media[k] for k in derangement(len(media), seed))):
            out[i]["pixel_values"] = _fit_frames(items[j]["pixel_values"], items[i]["pixel_values"].shape[0])
    elif condition == "blank":
        for i in media:
            frames = items[i]["pixel_values"]  # uint8 (normalised by the model) or already normalised
            grey = 128 if frames.dtype == torch.uint8 else 0
            out[i]["pixel_values"] = torch.full_like(frames, grey)
    return out


@torch.no_grad()
def answer_token_loss(model: Any, items: Sequence[Mapping[str, Any]], collate_fn: Any, batch_size: int = 16) -> float:
    """Mean cross-entropy per answer token of ``model`` over ``items`` (every answer token weighs the same).

    Args:
        model: A model whose ``forward(input_ids=, attention_mask=, labels=, pixel_values=, num_frames=)``
            splices the media and returns ``.logits`` over the spliced sequence and ``.loss`` (the exported
            ``VideoCCAMForCausalLM``).
        items: Training-dataset items.
        collate_fn: The training collate (``videoccam_collate_fn``).
        batch_size: Samples per forward.

    Returns:
        The loss (nats per token).
    """
    param = next(model.parameters())
    total, tokens = 0.0, 0
    for start in range(0, len(items), batch_size):
        data = collate_fn(list(items[start : start + batch_size]))["data"]
        pixel_values = data.get("pixel_values")
        if pixel_values is not None and pixel_values.dtype == torch.uint8:  # the dataset's normalize_in_model
            from videoccam.model.videoccam_model import normalize_pixels

            pixel_values = normalize_pixels(pixel_values, data.get("pixel_affine"))
        out = model(
            input_ids=data["input_ids"].to(param.device),
            attention_mask=data["attention_mask"].to(param.device),
            labels=data["labels"].to(param.device),
            pixel_values=None if pixel_values is None else pixel_values.to(param.device, param.dtype),
            num_frames=data.get("num_frames"),
            use_cache=False,
        )
        # the loss is a mean over the batch's answer tokens: weigh it by their number (the first token of a
        # sample is never an answer, so shifting does not change the count)
        n = int((data["labels"][:, 1:] != IGNORE_INDEX).sum())
        total += float(out.loss) * n
        tokens += n
    if tokens == 0:
        raise ValueError("no answer tokens in the evaluation items")
    return total / tokens


def frame_ablation_losses(
    model: Any,
    items: Sequence[Mapping[str, Any]],
    collate_fn: Any,
    batch_size: int = 16,
    conditions: Sequence[str] = FRAME_CONDITIONS,
    seed: int = 0,
) -> dict[str, float]:
    """Answer-token loss of ``model`` on ``items`` for each frame condition (see :func:`ablate_frames`).

    Returns:
        ``{condition: loss}`` in the order of ``conditions``.
    """
    model_was_training = getattr(model, "training", False)
    model.eval()
    try:
        return {
            condition: answer_token_loss(model, ablate_frames(items, condition, seed), collate_fn, batch_size)
            for condition in tqdm(conditions, desc="frame-ablation losses", leave=False)
        }
    finally:
        model.train(model_was_training)


# ----------------------------------------------------------------------------------------------------------------
# Scoring a free-form reply against its reference answer
# ----------------------------------------------------------------------------------------------------------------
_WORD = re.compile(r"[a-z0-9]+")
ARTICLES = frozenset({"a", "an", "the"})


def answer_words(text: str) -> list[str]:
    """The words of ``text``, lower-cased, without punctuation and without the articles a / an / the (kept when
    they are all there is, so that an option letter ``"A."`` stays ``["a"]``).

    ``"The green square."`` -> ``["green", "square"]``; ``" Red!"`` -> ``["red"]``; ``"..."`` -> ``[]``.
    """
    words = _WORD.findall(text.lower())
    content = [word for word in words if word not in ARTICLES]
    return content or words


@dataclass(frozen=True)
class ExactMatch:
    """Correct when the reply equals the answer after normalisation (:func:`answer_words`: case, punctuation and
    articles ignored): ``"green square"`` matches ``"The green square."``, ``"Green."`` matches ``"green"``, while
    ``"The red circle."`` or ``"A green square appears."`` do not match ``"The green square."``.

    The general rule, for answers of any vocabulary (users' own records).
    """

    def __call__(self, reply: str, answer: str) -> bool:
        expected = answer_words(answer)
        return bool(expected) and answer_words(reply) == expected

    def label(self, answer: str) -> str:
        """What this rule compared for ``answer`` (for the report)."""
        return "exact match"


@dataclass(frozen=True)
class ContentWords:
    """Correct when the reply names the answer's content words: for every vocabulary (``color``, ``shape``, ...)
    the answer uses, the reply's words from that vocabulary are exactly the answer's, in the same order; words of
    vocabularies the answer does not use, and every other word, are free.

    ``"Green square"`` and ``"It is a green square."`` match ``"The green square."``; ``"The red circle."``,
    ``"A green circle."`` (a conflicting shape), ``"Green."`` (the shape missing) and ``"The green square, then a
    red square."`` do not. For ``"Red."`` (only a colour) ``"Red square"`` matches and ``"Red or blue"`` does not. A
    description ``"A red square appears, then a blue circle."`` needs both colours and both shapes in this order.
    An answer with no content word falls back to :class:`ExactMatch`.

    Time per reply: linear in the number of its words.
    """

    vocabularies: Mapping[str, frozenset[str]]  # vocabulary name -> its words (lower case)

    def _content(self, text: str) -> dict[str, list[str]]:
        words = _WORD.findall(text.lower())
        return {name: [w for w in words if w in vocabulary] for name, vocabulary in self.vocabularies.items()}

    def __call__(self, reply: str, answer: str) -> bool:
        expected = {name: words for name, words in self._content(answer).items() if words}
        if not expected:
            return ExactMatch()(reply, answer)
        got = self._content(reply)
        return all(got[name] == words for name, words in expected.items())

    def label(self, answer: str) -> str:
        """``"content words (color, shape)"``: the vocabularies ``answer`` uses (or ``"exact match"``)."""
        used = [name for name, words in self._content(answer).items() if words]
        return f"content words ({', '.join(used)})" if used else ExactMatch().label(answer)


@dataclass
class QAItem:
    """One single-question media record to answer."""

    uid: str
    media_path: Path
    kind: str  # "video" or "image"
    question: str  # the human turn without its placeholder line
    answer: str
    task: str


def qa_items(records: Iterable[Mapping[str, Any]], root: str | Path, source: str = "records") -> list[QAItem]:
    """Single-question media records (design.md section 4, optional ``task``) as :class:`QAItem`.

    Raises:
        ValueError: A record without media, without exactly one question and answer, or without a placeholder
            at the start of its question (naming ``source`` and the record).
    """
    items = []
    for index, record in enumerate(records):
        where = f"{source} record {index} (id {record.get('id')!r})"
        kind = "video" if "video" in record else "image" if "image" in record else None
        turns = record.get("conversations", [])
        if kind is None:
            raise ValueError(f"{where}: no video or image; accuracy is measured on media questions")
        if len(turns) != 2 or [t.get("from") for t in turns] != ["human", "gpt"]:
            raise ValueError(f"{where}: needs exactly one human question and one gpt answer, got {len(turns)} turns")
        question = turns[0]["value"]
        for token in ("<video>", "<image>"):
            question = question.replace(token + "\n", "", 1) if question.startswith(token) else question
        if "<video>" in question or "<image>" in question:
            raise ValueError(f"{where}: the placeholder must open the question")
        items.append(QAItem(str(record.get("id", index)), Path(root) / record[kind], kind, question,
                            turns[1]["value"], str(record.get("task", "all"))))  # fmt: skip
    return items


class AnswerRule(Protocol):
    """Scores a reply against its reference answer (:class:`ExactMatch`, :class:`ContentWords`)."""

    def __call__(self, reply: str, answer: str) -> bool: ...

    def label(self, answer: str) -> str: ...


@dataclass
class AccuracyReport:
    """Per-task accuracy, the rule each task was scored by, and the replies behind it."""

    tallies: dict[str, Tally]
    replies: list[dict[str, Any]] = field(default_factory=list)
    rules: dict[str, str] = field(default_factory=dict)  # task -> how its replies were scored

    def accuracy(self, tasks: Sequence[str] | None = None) -> float:
        """Pooled accuracy (0-1) over ``tasks`` (all when None); NaN when there is no question."""
        chosen = [t for name, t in self.tallies.items() if tasks is None or name in tasks]
        total = sum(t.total for t in chosen)
        return sum(t.correct for t in chosen) / total if total else math.nan


def answer_accuracy(
    backend: VideoQABackend,
    items: Sequence[QAItem],
    load_frames: Any,
    rule: AnswerRule | None = None,
    batch_size: int = 16,
    max_new_tokens: int = 24,
) -> AccuracyReport:
    """Greedy replies to ``items`` scored by ``rule``, grouped by task.

    Args:
        backend: The model (``encode`` once per media file, ``answer`` per batch).
        items: Questions (:func:`qa_items`).
        load_frames: ``(path, kind) -> list of PIL frames`` (e.g. a ``FrameSampling``'s ``load(...).frames``).
        rule: How a reply is scored against its answer (default :class:`ExactMatch`).
        batch_size: Questions per ``answer`` call.
        max_new_tokens: Reply budget (long enough for the longest answer, so a reply is not cut before it
            names what it has to).

    Returns:
        The report; ``replies`` lists uid, task, answer, reply and verdict of every question, ``rules`` how each
        task was scored. Time: one ``encode`` per distinct media file and one ``answer`` call per batch; memory:
        the encoded media of all items (kept for questions sharing a file) and one reply per item.
    """
    rule = rule or ExactMatch()
    cache: dict[Path, object] = {}
    tallies: dict[str, Tally] = {}
    labels: dict[str, dict[str, None]] = {}
    replies = []
    for start in tqdm(range(0, len(items), batch_size), desc="answering", leave=False):
        batch = items[start : start + batch_size]
        media = []
        for item in batch:
            if item.media_path not in cache:
                cache[item.media_path] = backend.encode(load_frames(item.media_path, item.kind))
            media.append(cache[item.media_path])
        placeholder = {"video": "<video>", "image": "<image>"}
        prompts = [f"{placeholder[item.kind]}\n{item.question}" for item in batch]
        for item, reply in zip(batch, backend.answer(prompts, media, max_new_tokens=max_new_tokens)):
            correct = rule(reply, item.answer)
            tally = tallies.setdefault(item.task, Tally())
            tally.total += 1
            tally.correct += int(correct)
            labels.setdefault(item.task, {})[rule.label(item.answer)] = None
            replies.append({"uid": item.uid, "task": item.task, "answer": item.answer, "reply": reply,
                            "correct": correct})  # fmt: skip
    return AccuracyReport(tallies, replies, {task: " / ".join(seen) for task, seen in labels.items()})


# ----------------------------------------------------------------------------------------------------------------
# The gate
# ----------------------------------------------------------------------------------------------------------------
def check_grounding(
    losses: Mapping[str, float],
    accuracy: float,
    chance: float,
    num_questions: int | None = None,
    per_task: Mapping[str, tuple[float, float]] | None = None,
    min_relative_gap: float = MIN_RELATIVE_GAP,
    min_accuracy_over_chance: float = MIN_ACCURACY_OVER_CHANCE,
    min_task_over_chance: float = MIN_TASK_OVER_CHANCE,
    min_standard_errors: float = 3.0,
) -> list[str]:
    """Reasons why a model does not clearly use its frames (an empty list means it does).

    Args:
        losses: :func:`frame_ablation_losses` output (``real``, ``shuffled``, ``blank``).
        accuracy: Accuracy (0-1) on the content questions, pooled.
        chance: Accuracy (0-1) of guessing among the possible answers, pooled.
        num_questions: Content questions scored; with it the accuracy must also be ``min_standard_errors``
            binomial standard errors of a guesser above chance (``sqrt(chance (1 - chance) / n)``), so that a
            handful of lucky answers cannot pass.
        per_task: ``{task: (accuracy, chance)}`` of each content task; each must reach
            ``min_task_over_chance`` x its chance, so that one task read well cannot carry one that is not.
        min_relative_gap: The real-frame loss must be at most ``1 - min_relative_gap`` times each other loss.
        min_accuracy_over_chance: The pooled accuracy must be at least this multiple of ``chance``.
        min_task_over_chance: See ``per_task``.
        min_standard_errors: See ``num_questions``.
    """
    failures = []
    for other in ("shuffled", "blank"):
        limit = (1.0 - min_relative_gap) * losses[other]
        if not losses["real"] <= limit:
            failures.append(
                f"loss with real frames {losses['real']:.4f} is not {min_relative_gap:.0%} below the loss with "
                f"{other} frames {losses[other]:.4f} (needs <= {limit:.4f})"
            )
    needed = min_accuracy_over_chance * chance
    why = f"{min_accuracy_over_chance:g} x chance"
    if num_questions:
        significant = chance + min_standard_errors * math.sqrt(chance * (1.0 - chance) / num_questions)
        if significant > needed:
            needed = significant
            why = f"chance + {min_standard_errors:g} standard errors over {num_questions} questions"
    if not accuracy >= needed:
        failures.append(
            f"content accuracy {accuracy:.1%} is not clearly above chance {chance:.1%} (needs >= {why} = {needed:.1%})"
        )
    for task, (task_accuracy, task_chance) in (per_task or {}).items():
        if not task_accuracy >= min_task_over_chance * task_chance:
            failures.append(
                f"{task}: accuracy {task_accuracy:.1%} is below {min_task_over_chance:g} x its chance "
                f"{task_chance:.1%} (needs >= {min_task_over_chance * task_chance:.1%})"
            )
    return failures


@dataclass
class GroundingReport:
    """What :func:`evaluate_grounding` measured."""

    losses: dict[str, float]
    accuracy: AccuracyReport
    task_chance: dict[str, float]  # content task -> accuracy (0-1) of guessing its answers

    @property
    def content_tasks(self) -> tuple[str, ...]:
        return tuple(self.task_chance)

    @property
    def content_questions(self) -> int:
        return sum(self.accuracy.tallies[task].total for task in self.content_tasks)

    @property
    def content_accuracy(self) -> float:
        return self.accuracy.accuracy(self.content_tasks)

    @property
    def chance(self) -> float:
        """Chance accuracy of the content questions, pooled (weighted by each task's question count)."""
        total = self.content_questions
        weighted = sum(c * self.accuracy.tallies[task].total for task, c in self.task_chance.items())
        return weighted / total if total else math.nan

    def failures(self, **criteria: float) -> list[str]:
        """:func:`check_grounding` of this report (``criteria``: its keyword arguments, to override defaults)."""
        per_task = {task: (self.accuracy.accuracy([task]), chance) for task, chance in self.task_chance.items()}
        return check_grounding(self.losses, self.content_accuracy, self.chance, self.content_questions,
                               per_task=per_task, **criteria)  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (losses, per-task tallies, scoring rules and chance, content accuracy)."""
        return {"losses": self.losses, "content_tasks": list(self.content_tasks), "task_chance": self.task_chance,
                "chance": self.chance, "content_accuracy": self.content_accuracy,
                "per_task": {task: t.to_dict() for task, t in self.accuracy.tallies.items()},
                "rules": self.accuracy.rules, "replies": self.accuracy.replies}  # fmt: skip

    def table(self) -> str:
        """A printable summary: the three losses, then accuracy per task (with chance and scoring rule)."""
        lines = ["answer-token loss on held-out samples:"]
        real = self.losses["real"]
        for name, value in self.losses.items():
            rel = "" if name == "real" else f"   (real is {1 - real / value:+.0%} lower)" if value else ""
            lines.append(f"  {name + ' frames':<16} {value:.4f}{rel}")
        lines.append("accuracy per task (content tasks with their chance), scored by:")
        for task, tally in self.accuracy.tallies.items():
            chance = f"chance {self.task_chance[task]:5.1%}" if task in self.task_chance else ""
            lines.append(f"  {task:<12} {tally.correct:>4}/{tally.total:<4} {tally.correct / tally.total:6.1%}  "
                         f"{chance:<13} {self.accuracy.rules.get(task, '')}")  # fmt: skip
        lines.append(f"  content questions: {self.content_accuracy:.1%} of {self.content_questions} "
                     f"(chance {self.chance:.1%})")
        return "\n".join(lines)


def evaluate_grounding(
    backend: Any,
    dataset: Any,
    records: Sequence[Mapping[str, Any]],
    content_chance: Mapping[str, float],
    rule: AnswerRule | None = None,
    batch_size: int = 16,
) -> GroundingReport:
    """Frame-ablation losses and answer accuracy of a converted model on held-out data.

    Args:
        backend: An ``HFVideoCCAMBackend`` (its ``model`` computes the losses).
        dataset: A ``VideoCCAMDataset`` over the held-out records (built from the training config, so prompts
            and frames are processed exactly as in training); its frame sampling is also used for answering.
        records: The held-out records (single-question media records are answered; others only enter the
            losses).
        content_chance: ``{task: chance accuracy}`` of the content questions (e.g. 1/4 for a colour out of four).
        rule: How replies are scored (default :class:`ExactMatch`; the synthetic data's is
            ``videoccam.synthetic.shapes.ANSWER_RULE``).
        batch_size: Samples per forward.

    Returns:
        The report.
    """
    from videoccam.dataset.collate import videoccam_collate_fn

    items = [dataset[i] for i in tqdm(range(len(dataset)), desc="loading held-out samples", leave=False)]
    losses = frame_ablation_losses(backend.model, items, videoccam_collate_fn, batch_size=batch_size)
    answerable = [r for r in records if len(r.get("conversations", [])) == 2 and ("video" in r or "image" in r)]
    questions = qa_items(answerable, dataset.data_root, source=dataset.source)

    def load_frames(path: Path, kind: str) -> list:
        return dataset.frame_sampling.load(path, kind).frames

    accuracy = answer_accuracy(backend, questions, load_frames, rule, batch_size=batch_size)
    task_chance = {task: float(chance) for task, chance in content_chance.items() if task in accuracy.tallies}
    return GroundingReport(losses, accuracy, task_chance)
