"""MLVU (Zhou et al., 2024), dev set: 7 multiple-choice tasks and 2 generation tasks on long videos.

Official layout (the Hugging Face ``MLVU/MVLU`` release)::

    ROOT/json/1_plotQA.json ... 7_topic_reasoning.json, 8_sub_scene.json, 9_summary.json
        multiple choice: [{"video": "x.mp4", "duration": d, "question": "...", "candidates": [...],
                           "answer": "...", "question_type": "plotQA"}, ...]
        generation:      [{"video": "x.mp4", "duration": d, "question": "...", "answer": "...",
                           "question_type": "subPlot" | "summary", ("scoring_points": ...)}, ...]
    ROOT/video/<json stem>/<video>     (e.g. video/1_plotQA/x.mp4); video/<task>/<video> is accepted too

Protocol (the upstream Video-CCAM ``eval/mlvu.py``): ``uniform`` frames over the whole video; multiple choice as
MVBench (``Question: ...\\nOptions:\\n(A) ...`` + the letter instruction). Metrics: per-task accuracy, ``m_avg``
= the mean of the 7 task accuracies (MLVU's official M-Avg) and ``micro_avg`` = all correct / all questions (what
upstream printed as "Avg"); the two differ because the tasks have different sizes.

Generation tasks get the prompt ``<video>\\n{question}`` (greedy decoding; upstream used 5-beam search) and their
replies are written to ``generation_f{N}/<task>.json`` as ``[{"video_name", "Q", "A", "pred"}, ...]`` (plus
``scoring_points`` when the annotation has them), the format MLVU's GPT-judge scripts read. They are not scored
here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Sequence

from videoccam.evaluation.benchmark import Benchmark
from videoccam.evaluation.metrics import macro_average, micro_average, tallies_to_dict, tally_by
from videoccam.evaluation.prompts import mc_question_block, option_letter
from videoccam.evaluation.report import write_json
from videoccam.evaluation.samples import MediaRef, Sample
from videoccam.evaluation.scoring import score_samples

# Task name -> annotation file, in MLVU's numbering.
MLVU_MC_TASKS: dict[str, str] = {
    "plotQA": "1_plotQA.json",
    "needle": "2_needle.json",
    "ego": "3_ego.json",
    "count": "4_count.json",
    "order": "5_order.json",
    "anomaly_reco": "6_anomaly_reco.json",
    "topic_reasoning": "7_topic_reasoning.json",
}
MLVU_GEN_TASKS: dict[str, str] = {
    "sub_scene": "8_sub_scene.json",
    "summary": "9_summary.json",
}


class MLVU(Benchmark):
    """MLVU evaluator; see the module docstring for layout and protocol.

    Args:
        root: MLVU folder (holding ``json/`` and ``video/``).
        tasks: Task names (from ``MLVU_MC_TASKS`` and ``MLVU_GEN_TASKS``) to evaluate; default all. A task
            whose json is missing is an error when named, and skipped (listed in the results) otherwise.
    """

    name: ClassVar[str] = "mlvu"
    limit_group: ClassVar[str | None] = "task"

    def __init__(self, root: str | Path, tasks: Sequence[str] | None = None) -> None:
        super().__init__(root, tasks)
        known = {**MLVU_MC_TASKS, **MLVU_GEN_TASKS}
        if self.tasks:
            unknown = [t for t in self.tasks if t not in known]
            if unknown:
                raise ValueError(f"unknown MLVU task(s) {unknown}; known: {list(known)}")

    def _video_path(self, json_file: str, task: str, video: str) -> str:
        stem_dir = self.root / "video" / Path(json_file).stem / video
        if stem_dir.exists():
            return str(stem_dir)
        task_dir = self.root / "video" / task / video
        return str(task_dir if task_dir.exists() else stem_dir)

    def load_samples(self) -> list[Sample]:
        """Read every task's json.

        Raises:
            FileNotFoundError: If no task json exists, or an explicitly requested one is missing.
            ValueError: On a malformed record (named by file and index).
        """
        samples = []
        self.missing_tasks = []
        tasks = [(t, f, False) for t, f in MLVU_MC_TASKS.items()] + [(t, f, True) for t, f in MLVU_GEN_TASKS.items()]
        for task, json_file, generation in tasks:
            if self.tasks and task not in self.tasks:
                continue
            path = self.root / "json" / json_file
            if not path.exists():
                if self.tasks:
                    raise FileNotFoundError(f"MLVU task {task!r}: {path} not found")
                self.missing_tasks.append(task)
                continue
            for i, rec in enumerate(json.loads(path.read_text(encoding="utf-8"))):
                try:
                    video, question = str(rec["video"]), str(rec["question"])
                    answer = str(rec["answer"])
                    candidates = None if generation else [str(c) for c in rec["candidates"]]
                except (KeyError, TypeError) as e:
                    raise ValueError(f"{path} record {i}: malformed MLVU record ({e!r}): {str(rec)[:200]}") from e
                media = MediaRef(path=self._video_path(json_file, task, video))
                meta: dict[str, Any] = {"task": task, "video_name": Path(video).name}
                if generation:
                    if "scoring_points" in rec:
                        meta["scoring_points"] = rec["scoring_points"]
                    samples.append(Sample(uid=f"{task}/{i}", media=media, question=question, answer=answer,
                                          meta=meta, generation=True))
                    continue
                if answer not in candidates:
                    raise ValueError(f"{path} record {i}: answer {answer!r} is not one of the candidates {candidates}")
                samples.append(
                    Sample(
                        uid=f"{task}/{i}",
                        media=media,
                        question=mc_question_block(question, candidates),
                        answer=option_letter(candidates.index(answer)),
                        num_options=len(candidates),
                        meta=meta,
                    )
                )
        if not samples:
            raise FileNotFoundError(f"no MLVU task json found under {self.root / 'json'}")
        return samples

    def compute_metrics(self, samples: Sequence[Sample], replies: dict[str, str]) -> dict[str, Any]:
        """Per-task accuracy, M-Avg (mean over tasks), micro average; generation questions are only counted."""
        generation: dict[str, dict[str, int]] = {}
        for s in samples:
            if s.generation:
                g = generation.setdefault(s.meta["task"], {"answered": 0, "total": 0})
                g["total"] += 1
                g["answered"] += int(s.uid in replies)
        rows, unparseable, missing = score_samples([s for s in samples if not s.generation], replies)
        scored = [(s.meta["task"], r) for s, r in rows]
        order = [t for t in MLVU_MC_TASKS if any(s.meta["task"] == t for s in samples)]
        per_task = tally_by(scored, order=order)
        overall = micro_average(per_task)
        return {
            "m_avg": macro_average(per_task),
            "micro_avg": overall.accuracy,
            "overall": overall.to_dict(),
            "per_task": tallies_to_dict(per_task),
            "generation": generation,
            "unparseable": unparseable,
            "missing": missing,
            "missing_tasks": list(self.missing_tasks),
        }

    def headline(self, metrics: dict[str, Any]) -> dict[str, float]:
        """M-Avg (official) and the micro average."""
        return {"M-Avg": metrics["m_avg"], "micro": metrics["micro_avg"]}

    def breakdown(self, metrics: dict[str, Any]) -> dict[str, float]:
        """Per-task accuracies of the multiple-choice tasks."""
        return {k: v["accuracy"] for k, v in metrics["per_task"].items()}

    def write_extra(self, out_dir: Path, num_frames: int, variant: str, samples: Sequence[Sample],
                    records: dict[str, dict[str, Any]]) -> dict[str, str]:
        """Write the generation replies for MLVU's external judge (one file per generation task)."""
        by_task: dict[str, list[dict[str, Any]]] = {}
        for s in samples:
            if not s.generation or s.uid not in records:
                continue
            item = {"video_name": s.meta["video_name"], "Q": s.question, "A": s.answer, "pred": records[s.uid]["reply"]}
            if "scoring_points" in s.meta:
                item["scoring_points"] = s.meta["scoring_points"]
            by_task.setdefault(s.meta["task"], []).append(item)
        written = {}
        for task, items in by_task.items():
            path = out_dir / f"generation_f{num_frames}" / f"{task}.json"
            write_json(path, items)
            written[f"generation_{task}"] = str(path)
        return written
