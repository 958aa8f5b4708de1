"""The evaluation loop: frame-count sweep, feature reuse, batching and resuming from saved predictions.

Output layout under ``out_dir/<benchmark>/``:

* ``predictions_f{N}.jsonl``: one record per answered question (``variant``, ``uid``, ``num_frames``, ``reply``,
  ``pred``, ``correct``, ``prompt``); appended and flushed per answered batch (:class:`~.store.PredictionStore`),
  read back on the next run so that questions already answered are skipped.
* ``results_f{N}.json`` (or ``results_f{N}_{variant}.json`` for benchmarks with variants, e.g. Video-MME
  ``wo_sub`` / ``w_sub``): metrics of one frame count; ``summary.json``: headline numbers of every frame count and
  variant evaluated so far (:mod:`.report`).
* ``run_info.json``: the model and data of the predictions, checked on resume so that answers of another model
  are never mixed in.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from videoccam.evaluation.backend import VideoQABackend
from videoccam.evaluation.benchmark import Benchmark
from videoccam.evaluation.report import results_name, summary_table, write_json, write_summary
from videoccam.evaluation.samples import MediaRef, Sample
from videoccam.evaluation.scoring import score_reply
from videoccam.evaluation.store import PredictionStore

__all__ = ["evaluate"]

logger = logging.getLogger(__name__)


@dataclass
class _Pending:
    sample: Sample
    variant: str
    prompt: str
    features: object


def _check_run_info(bench_dir: Path, run_info: dict[str, Any] | None, overwrite: bool) -> None:
    """Refuse to mix predictions of another model (or data folder) into an existing output folder."""
    path = bench_dir / "run_info.json"
    if overwrite and bench_dir.exists():
        for p in list(bench_dir.glob("predictions_f*.jsonl")) + list(bench_dir.glob("results_f*.json")):
            p.unlink()
        for p in bench_dir.glob("generation_f*"):
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink()
        (bench_dir / "summary.json").unlink(missing_ok=True)
        path.unlink(missing_ok=True)
    if run_info is None:
        return
    if path.exists():
        old = json.loads(path.read_text(encoding="utf-8"))
        diff = {k: (old.get(k), v) for k, v in run_info.items() if old.get(k) != v}
        if diff:
            details = "; ".join(f"{k}: was {a!r}, now {b!r}" for k, (a, b) in diff.items())
            raise ValueError(
                f"{bench_dir} holds predictions of another run ({details}); use a new --out folder or --overwrite"
            )
    else:
        write_json(path, run_info)


def evaluate(
    benchmark: Benchmark,
    backend: VideoQABackend,
    num_frames: Sequence[int],
    out_dir: str | Path,
    *,
    batch_size: int = 1,
    variants: Sequence[str] | None = None,
    limit: int | None = None,
    max_new_tokens: int = 16,
    gen_max_new_tokens: int = 512,
    run_info: dict[str, Any] | None = None,
    overwrite: bool = False,
    progress: bool = True,
    print_fn: Callable[[str], None] | None = print,
) -> dict[int, dict[str, dict[str, Any]]]:
    """Evaluate a backend on a benchmark for one or more frame counts, resuming from saved predictions.

    For each frame count, the questions without a saved reply are grouped by video; each video is decoded and
    encoded once (``backend.encode``) and its features are reused for all of its questions and variants. Questions
    are answered in batches of ``batch_size`` (mixing videos), and every batch's replies are saved before the next
    batch starts.

    Args:
        benchmark: The benchmark.
        backend: The model.
        num_frames: Frame counts to sweep (e.g. ``[16, 32, 64, 96]``).
        out_dir: Output root; files go to ``out_dir/<benchmark.name>/``.
        batch_size: Questions per ``backend.answer`` call.
        variants: Subset of ``benchmark.variants`` (default: all).
        limit: Evaluate only the first ``limit`` questions (per ``benchmark.limit_group``).
        max_new_tokens: Generation budget of multiple-choice questions.
        gen_max_new_tokens: Generation budget of open-ended questions.
        run_info: Identity of the run (model, data); stored on the first run and compared on resume.
        overwrite: Delete previous predictions and results of this benchmark first.
        progress: Show a tqdm progress bar.
        print_fn: Where the summary table goes (None: nowhere).

    Returns:
        ``{num_frames: {variant: results dict}}``, the same content as the ``results_*.json`` files.

    Raises:
        ValueError: On bad arguments, a mismatching ``run_info``, or a backend returning the wrong number of replies.
    """
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    if not num_frames or any(int(n) < 1 for n in num_frames):
        raise ValueError(f"frame counts must be positive integers, got {list(num_frames)}")
    variants = list(variants or benchmark.variants)
    unknown = [v for v in variants if v not in benchmark.variants]
    if unknown:
        raise ValueError(f"{benchmark.name} has variants {list(benchmark.variants)}, got {unknown}")
    bench_dir = Path(out_dir) / benchmark.name
    bench_dir.mkdir(parents=True, exist_ok=True)
    _check_run_info(bench_dir, run_info, overwrite)
    samples = benchmark.select(limit)
    if benchmark.missing_tasks:
        logger.warning("%s: no annotation file for task(s) %s under %s; they are skipped",
                       benchmark.name, benchmark.missing_tasks, benchmark.root)

    all_results: dict[int, dict[str, dict[str, Any]]] = {}
    for nf in num_frames:
        nf = int(nf)
        store = PredictionStore(bench_dir / f"predictions_f{nf}.jsonl", nf)
        _answer_missing(benchmark, backend, store, samples, variants, nf, batch_size, max_new_tokens,
                        gen_max_new_tokens, progress)
        all_results[nf] = {}
        for variant in variants:
            records = {uid: r for (v, uid), r in store.records.items() if v == variant}
            replies = {uid: r["reply"] for uid, r in records.items()}
            metrics = benchmark.compute_metrics(samples, replies)
            extra = benchmark.write_extra(bench_dir, nf, variant, samples, records)
            result = {
                "benchmark": benchmark.name,
                "num_frames": nf,
                "variant": variant,
                "limit": limit,
                "num_questions": len(samples),
                "headline": benchmark.headline(metrics),
                "metrics": metrics,
                "files": {"predictions": str(store.path), **extra},
            }
            write_json(bench_dir / results_name(nf, variant, benchmark.variants), result)
            all_results[nf][variant] = result

    write_summary(bench_dir, all_results)
    if print_fn is not None:
        print_fn(summary_table(benchmark, all_results))
    return all_results


def _answer_missing(
    benchmark: Benchmark,
    backend: VideoQABackend,
    store: PredictionStore,
    samples: Sequence[Sample],
    variants: Sequence[str],
    nf: int,
    batch_size: int,
    max_new_tokens: int,
    gen_max_new_tokens: int,
    progress: bool,
) -> None:
    total = len(samples) * len(variants)
    todo = [(s, v) for s in samples for v in variants if (v, s.uid) not in store]
    if not todo:
        logger.info("%s, %d frames: all %d answers found in %s", benchmark.name, nf, total, store.path)
        return
    if len(todo) < total:
        logger.info("%s, %d frames: resuming, %d of %d answers found in %s", benchmark.name, nf,
                    total - len(todo), total, store.path)
    by_media: dict[MediaRef, list[tuple[Sample, str]]] = {}
    for s, v in todo:
        by_media.setdefault(s.media, []).append((s, v))

    from tqdm import tqdm

    bar = tqdm(total=total, initial=total - len(todo), desc=f"{benchmark.name} {nf} frames", unit="q",
               disable=not progress, dynamic_ncols=True)
    pending: dict[int, list[_Pending]] = {}

    def flush(budget: int) -> None:
        batch = pending.pop(budget, [])
        if not batch:
            return
        replies = backend.answer([p.prompt for p in batch], [p.features for p in batch], max_new_tokens=budget)
        if len(replies) != len(batch):
            raise ValueError(f"backend returned {len(replies)} replies for {len(batch)} prompts")
        records = []
        for p, reply in zip(batch, replies):
            rec: dict[str, Any] = {"variant": p.variant, "uid": p.sample.uid, "reply": reply}
            if not p.sample.generation:
                scored = score_reply(reply, p.sample.answer, p.sample.num_options)
                rec.update(pred=scored.pred, answer=p.sample.answer, correct=scored.correct)
            rec["prompt"] = p.prompt
            records.append(rec)
        store.add_many(records)
        bar.update(len(batch))

    try:
        for media, items in by_media.items():
            loaded = benchmark.load_media(media, nf)
            features = backend.encode(loaded.frames)
            for s, v in items:
                budget = gen_max_new_tokens if s.generation else max_new_tokens
                pending.setdefault(budget, []).append(_Pending(s, v, benchmark.build_prompt(s, v, loaded), features))
                if len(pending[budget]) >= batch_size:
                    flush(budget)
        for budget in list(pending):
            flush(budget)
    finally:
        bar.close()
