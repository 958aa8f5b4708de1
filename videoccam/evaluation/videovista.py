"""VideoVista (Li et al., 2024): multiple-choice questions of 27 task types, grouped into understanding and
reasoning.

Layout (as read by the upstream Video-CCAM ``eval/videovista.py``)::

    ROOT/VideoVista.json      [{"video_name": "...", "category": "...", "Question": "...",
                                "Answer_Choices": [...], "Answer": <index of the correct choice>,
                                "Type": "<task type>", ...}, ...]
    ROOT/merged/<category>/<group>/<video_name>     with group = video_name.split(".")[1]

A video not found there is looked up in ``merged/*/<group>/``, then ``ROOT/videos/`` and ``ROOT/``.

Protocol: ``uniform`` frames over the whole video; prompt ``<video>\\n{Question}\\nOptions:\\n(A) ...\\n(B) ...\\n``
``Answer with the option's letter from the given choices directly.`` (upstream leaves a blank line before the
instruction; we do not). Metrics: per-type accuracy; ``understanding`` and ``reasoning`` = correct / total over
the types of each category (pooled, as upstream), ``overall`` = all correct / all questions.

Assumption: the type -> category map below is upstream Video-CCAM's (19 understanding and 8 reasoning types,
matching the VideoVista paper's 27 task types). A type in the data that is in neither list is reported under
``per_type`` and ``uncategorized_types`` and counts only in ``overall``.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar, Sequence

from videoccam.evaluation.benchmark import Benchmark
from videoccam.evaluation.metrics import Tally, micro_average, tallies_to_dict, tally_by
from videoccam.evaluation.prompts import format_options, option_letter
from videoccam.evaluation.samples import MediaRef, Sample
from videoccam.evaluation.scoring import score_samples

UNDERSTANDING_TYPES = (
    "Objects Existence", "Objects Count", "Action Count", "Detailed Description", "Brief Description",
    "Event Description", "Event Sequence", "Optical Character Recognition", "Action Recognition",
    "Action Sequence", "Action Location", "Event Location", "Objects Temporal Location",
    "Objects Temporal Relation", "Objects Spatial Location", "Objects Spatial Relation", "Objects Spatial Tracking",
    "Human Activity Analysis", "Anomaly Detection",
)
REASONING_TYPES = (
    "Relation Reasoning-Image", "Relation Reasoning-Video", "Event Prediction", "Action Prediction",
    "Causal Reasoning", "Counterfactual Reasoning", "Commonsense Reasoning", "Logic Reasoning",
)
ANNOTATION_FILE = "VideoVista.json"


def _pool(tallies: dict[str, Tally], types: Sequence[str]) -> Tally:
    return micro_average({t: tallies[t] for t in types if t in tallies})


class VideoVista(Benchmark):
    """VideoVista evaluator; see the module docstring for layout and protocol.

    Args:
        root: VideoVista folder (holding ``VideoVista.json`` and ``merged/``).
        tasks: Optional subset of question types.
    """

    name: ClassVar[str] = "videovista"

    def _find_video(self, category: str, video_name: str) -> str:
        parts = video_name.split(".")
        group = parts[1] if len(parts) > 1 else ""
        merged = self.root / "merged"
        candidates = [merged / category / group / video_name]
        if merged.is_dir():
            candidates += sorted(d / group / video_name for d in merged.iterdir() if d.is_dir())
        candidates += [self.root / "videos" / video_name, self.root / video_name]
        for c in candidates:
            if c.exists():
                return str(c)
        return str(candidates[0])  # the loader reports "file not found" with the canonical path

    def load_samples(self) -> list[Sample]:
        """Read ``VideoVista.json``.

        Raises:
            FileNotFoundError: If the annotation file is missing.
            ValueError: On a malformed record (named by index).
        """
        path = self.root / ANNOTATION_FILE
        if not path.exists():
            raise FileNotFoundError(f"VideoVista annotation {path} not found")
        samples = []
        for i, rec in enumerate(json.loads(path.read_text(encoding="utf-8"))):
            try:
                choices = [str(c) for c in rec["Answer_Choices"]]
                answer_idx = int(rec["Answer"])
                qtype, question = str(rec["Type"]), str(rec["Question"])
                video_name, category = str(rec["video_name"]), str(rec.get("category", ""))
            except (KeyError, TypeError, ValueError) as e:
                raise ValueError(f"{path} record {i}: malformed VideoVista record ({e!r}): {str(rec)[:200]}") from e
            if not 0 <= answer_idx < len(choices):
                raise ValueError(f"{path} record {i}: Answer {answer_idx} out of range for {len(choices)} choices")
            if self.tasks and qtype not in self.tasks:
                continue
            samples.append(
                Sample(
                    uid=str(rec.get("question_id", i)),
                    media=MediaRef(path=self._find_video(category, video_name)),
                    question=f"{question}\nOptions:\n{format_options(choices)}",
                    answer=option_letter(answer_idx),
                    num_options=len(choices),
                    meta={"type": qtype, "category": category},
                )
            )
        return samples

    def compute_metrics(self, samples: Sequence[Sample], replies: dict[str, str]) -> dict[str, Any]:
        """Per-type accuracy, understanding / reasoning / overall; unparseable replies."""
        rows, unparseable, missing = score_samples(samples, replies)
        scored = [(s.meta["type"], r) for s, r in rows]
        present = {s.meta["type"] for s in samples}
        order = [t for t in UNDERSTANDING_TYPES + REASONING_TYPES if t in present]
        per_type = tally_by(scored, order=order)
        uncategorized = [t for t in per_type if t not in UNDERSTANDING_TYPES and t not in REASONING_TYPES]
        return {
            "understanding": _pool(per_type, UNDERSTANDING_TYPES).to_dict(),
            "reasoning": _pool(per_type, REASONING_TYPES).to_dict(),
            "overall": micro_average(per_type).to_dict(),
            "per_type": tallies_to_dict(per_type),
            "uncategorized_types": uncategorized,
            "unparseable": unparseable,
            "missing": missing,
        }

    def headline(self, metrics: dict[str, Any]) -> dict[str, float]:
        """Understanding, reasoning and overall accuracy."""
        return {k: metrics[k]["accuracy"] for k in ("understanding", "reasoning", "overall")}

    def breakdown(self, metrics: dict[str, Any]) -> dict[str, float]:
        """Per-type accuracies."""
        return {k: v["accuracy"] for k, v in metrics["per_type"].items()}
