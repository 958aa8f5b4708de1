"""The evaluation loop: frame-count sweep, feature reuse, batching, resuming, and sharding over processes.

Output layout under ``out_dir/<benchmark>/``:

* ``predictions_f{N}.jsonl``: one record per answered question (``variant``, ``uid``, ``num_frames``, ``reply``,
  ``pred``, ``correct``, ``prompt``, and the run's identity ``run`` when given), in benchmark order once the run
  is complete. While several processes answer, each appends to its own ``predictions_f{N}.rank{R}.jsonl``
  (:mod:`.store`), flushed per answered batch; a one-process run appends to ``predictions_f{N}.jsonl`` itself.
  Every run reads all of them first, so questions already answered, by any earlier run with any number of
  processes, are skipped.
* ``results_f{N}.json`` (or ``results_f{N}_{variant}.json`` for benchmarks with variants, e.g. Video-MME
  ``wo_sub`` / ``w_sub``): metrics of one frame count; ``summary.json``: headline numbers of every frame count and
  variant evaluated so far (:mod:`.report`).
* ``run_info.json``: the model and data of the predictions, checked on resume so that answers of another model
  are never mixed in (each record also carries it, so a stray shard of another run is refused too).

Several processes (``torchrun``, :class:`~.distributed.RankGroup`): rank 0 reads what is already answered and
shares the blocks left among the ranks (:mod:`.sharding`: whole videos, balanced by question count, the same
batches as one process); every rank answers its blocks; when all have reported (a gloo collective), rank 0
merges the shards and writes the results. A run that dies is resumed by the same command on any number of
processes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from videoccam.evaluation.backend import VideoQABackend
from videoccam.evaluation.benchmark import Benchmark
from videoccam.evaluation.distributed import RankGroup
from videoccam.evaluation.report import results_name, summary_table, write_json, write_summary
from videoccam.evaluation.samples import MediaRef, Sample
from videoccam.evaluation.scoring import score_reply
from videoccam.evaluation.sharding import assign_blocks, plan_blocks
from videoccam.evaluation.store import PredictionStore, prediction_files, read_predictions, shard_path, write_predictions

__all__ = ["evaluate"]

logger = logging.getLogger(__name__)

Key = tuple[str, str]  # (variant, uid)
LAUNCH_FILE = ".launch"  # written by rank 0 of a multi-process launch, read by every rank


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


def _read_answered(bench_dir: Path, nf: int, run_info: dict[str, Any] | None) -> dict[Key, dict[str, Any]]:
    """Every saved record of a frame count: the merged file first, then the shards by rank (the first record of
    a question wins). Time and memory grow linearly with the records."""
    records: dict[Key, dict[str, Any]] = {}
    for path in prediction_files(bench_dir, nf):
        for key, rec in read_predictions(path, nf, run_info).items():
            records.setdefault(key, rec)
    return records


def _plan(bench_dir: Path, run_info: dict[str, Any] | None, overwrite: bool, frame_counts: list[int],
          keys: list[Key], blocks: list[list[int]], world_size: int, digest: str) -> dict[str, Any]:
    """Rank 0, before anyone answers: check the folder's run, then share each frame count's blocks left to answer.

    Returns ``{"digest": ..., "work": {nf: {"found": answers already saved, "shards": for each rank, its blocks
    as lists of item indices left to answer}}}``. Time and memory grow linearly with the saved records and items.
    """
    _check_run_info(bench_dir, run_info, overwrite)
    token = uuid.uuid4().hex
    if world_size > 1:  # every rank must see this file: the folder is shared
        (bench_dir / LAUNCH_FILE).write_text(token, encoding="utf-8")
    work = {}
    for nf in frame_counts:
        done = _read_answered(bench_dir, nf, run_info)
        left = [[i for i in block if keys[i] not in done] for block in blocks]
        shards = assign_blocks([len(b) for b in left], world_size)
        work[nf] = {"found": sum(k in done for k in keys), "shards": [[left[b] for b in shard] for shard in shards]}
    return {"digest": digest, "token": token, "work": work}


def _check_rank(plan: dict[str, Any], digest: str, bench_dir: Path, benchmark: Benchmark, group: RankGroup) -> None:
    """A rank's checks of rank 0's plan: the same questions, and the output folder rank 0 wrote to.

    Raises:
        ValueError: If this rank reads other questions, or does not see rank 0's files.
    """
    if plan["digest"] != digest:
        raise ValueError(f"rank {group.rank} reads other questions from {benchmark.root} than rank 0 (a different "
                         "copy of the data, or other --tasks / --limit / --batch-size); every process needs the "
                         "same data and arguments")  # fmt: skip
    if group.world_size > 1:
        path = bench_dir / LAUNCH_FILE
        seen = path.read_text(encoding="utf-8") if path.is_file() else None
        if seen != plan["token"]:
            raise ValueError(f"rank {group.rank} on {socket.gethostname()} does not see the file {path} that rank 0 "
                             "just wrote: --out must be a folder that every node shares")  # fmt: skip


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
    group: RankGroup | None = None,
) -> dict[int, dict[str, dict[str, Any]]]:
    """Evaluate a backend on a benchmark for one or more frame counts, resuming from saved predictions.

    For each frame count, the questions without a saved reply are answered block by block
    (:mod:`.sharding`): each video is decoded and encoded once (``backend.encode``) and its features are reused for
    all of its questions and variants; questions are answered in batches of ``batch_size`` (mixing the videos of
    a block), and every batch's replies are saved before the next batch starts. With a ``group`` of several
    processes, each answers its share of the blocks and rank 0 merges and writes the results; the batches, the
    predictions and the results are those of a one-process run. Time grows linearly with the questions left,
    memory with the questions and saved records (plus one block's features).

    Args:
        benchmark: The benchmark.
        backend: The model.
        num_frames: Frame counts to sweep (e.g. ``[16, 32, 64, 96]``).
        out_dir: Output root; files go to ``out_dir/<benchmark.name>/`` (a folder every process sees).
        batch_size: Questions per ``backend.answer`` call.
        variants: Subset of ``benchmark.variants`` (default: all).
        limit: Evaluate only the first ``limit`` questions (per ``benchmark.limit_group``).
        max_new_tokens: Generation budget of multiple-choice questions.
        gen_max_new_tokens: Generation budget of open-ended questions.
        run_info: Identity of the run (model, data); stored on the first run and compared on resume.
        overwrite: Delete previous predictions and results of this benchmark first.
        progress: Show a tqdm progress bar (rank 0 only).
        print_fn: Where the summary table goes (None: nowhere).
        group: The processes of the launch (default: this one alone).

    Returns:
        ``{num_frames: {variant: results dict}}``, the same content as the ``results_*.json`` files; on ranks
        other than 0, ``{}``.

    Raises:
        ValueError: On bad arguments, a mismatching ``run_info`` or saved record, or a backend returning the wrong
            number of replies.
        OtherRankError: On every rank when another rank failed.
    """
    group = group or RankGroup()
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    if not num_frames or any(int(n) < 1 for n in num_frames):
        raise ValueError(f"frame counts must be positive integers, got {list(num_frames)}")
    variants = list(variants or benchmark.variants)
    unknown = [v for v in variants if v not in benchmark.variants]
    if unknown:
        raise ValueError(f"{benchmark.name} has variants {list(benchmark.variants)}, got {unknown}")
    frame_counts = list(dict.fromkeys(int(n) for n in num_frames))
    bench_dir = Path(out_dir) / benchmark.name
    bench_dir.mkdir(parents=True, exist_ok=True)
    samples = benchmark.select(limit)
    if benchmark.missing_tasks and group.rank == 0:
        logger.warning("%s: no annotation file for task(s) %s under %s; they are skipped",
                       benchmark.name, benchmark.missing_tasks, benchmark.root)

    items = [(s, v) for s in samples for v in variants]
    keys = [(v, s.uid) for s, v in items]
    blocks = plan_blocks([s.media for s, _ in items], batch_size, [s.generation for s, _ in items])
    digest = hashlib.sha1(json.dumps([keys, batch_size]).encode("utf-8")).hexdigest()
    plan = group.from_rank0(lambda: _plan(bench_dir, run_info, overwrite, frame_counts, keys, blocks,
                                          group.world_size, digest))  # fmt: skip

    error: BaseException | None = None
    try:
        _check_rank(plan, digest, bench_dir, benchmark, group)
    except ValueError as e:
        error = e
    group.outcomes(error)  # before anyone answers: a rank that cannot take part stops them all
    stats: dict[int, tuple[int, float]] = {}
    try:
        for nf in frame_counts:
            work = plan["work"][nf]
            mine: list[list[int]] = work["shards"][group.rank]
            todo = sum(len(b) for b in mine)
            _log_start(benchmark.name, nf, group, len(keys), work["found"], todo)
            own = shard_path(bench_dir, nf, None if group.world_size == 1 else group.rank)
            store = PredictionStore(own, nf, run_info)
            start = time.perf_counter()
            _answer_blocks(benchmark, backend, store, items, mine, nf, batch_size, max_new_tokens, gen_max_new_tokens,
                           progress and group.rank == 0, group)  # fmt: skip
            stats[nf] = (todo, time.perf_counter() - start)
    except Exception as e:  # reported to every rank, then raised
        error = e
    per_rank = group.outcomes(error, stats)
    if group.rank != 0:
        return {}

    all_results: dict[int, dict[str, dict[str, Any]]] = {}
    for nf in frame_counts:
        answered = [s[nf] for s in per_rank]
        if sum(n for n, _ in answered):  # the slowest rank's answering time: throughput without start-up
            ranks = "" if group.world_size == 1 else f" by {group.world_size} ranks (per rank: " + ", ".join(
                f"{n} in {t:.2f} s" for n, t in answered) + ")"
            logger.info("%s, %d frames: %d answers in %.2f s%s", benchmark.name, nf, sum(n for n, _ in answered),
                        max(t for _, t in answered), ranks)  # fmt: skip
        records = _merge(bench_dir, nf, keys, run_info)
        all_results[nf] = {}
        for variant in variants:
            by_uid = {uid: r for (v, uid), r in records.items() if v == variant}
            replies = {uid: r["reply"] for uid, r in by_uid.items()}
            metrics = benchmark.compute_metrics(samples, replies)
            extra = benchmark.write_extra(bench_dir, nf, variant, samples, by_uid)
            result = {
                "benchmark": benchmark.name,
                "num_frames": nf,
                "variant": variant,
                "limit": limit,
                "num_questions": len(samples),
                "headline": benchmark.headline(metrics),
                "metrics": metrics,
                "files": {"predictions": str(shard_path(bench_dir, nf)), **extra},
            }
            write_json(bench_dir / results_name(nf, variant, benchmark.variants), result)
            all_results[nf][variant] = result

    (bench_dir / LAUNCH_FILE).unlink(missing_ok=True)
    write_summary(bench_dir, all_results)
    if print_fn is not None:
        print_fn(summary_table(benchmark, all_results))
    return all_results


def _log_start(name: str, nf: int, group: RankGroup, total: int, found: int, todo: int) -> None:
    if group.world_size > 1:
        logger.info("%s, %d frames: rank %d of %d answers %d of the %d questions left (%d in all)", name, nf,
                    group.rank, group.world_size, todo, total - found, total)  # fmt: skip
    elif not todo:
        logger.info("%s, %d frames: all %d answers found", name, nf, total)
    elif found:
        logger.info("%s, %d frames: resuming, %d of %d answers found", name, nf, found, total)


def _merge(bench_dir: Path, nf: int, keys: list[Key], run_info: dict[str, Any] | None) -> dict[Key, dict[str, Any]]:
    """Merge every prediction file of a frame count into ``predictions_f{N}.jsonl`` (benchmark order, then saved
    records of questions outside this run), then delete the shards. Time and memory grow linearly with the records.

    Raises:
        ValueError: If a question of the run has no saved reply, or a file holds records of another run.
    """
    files = prediction_files(bench_dir, nf)
    records = _read_answered(bench_dir, nf, run_info)
    missing = [k for k in keys if k not in records]
    if missing:
        raise ValueError(f"{len(missing)} of {len(keys)} questions have no saved reply for {nf} frames in "
                         f"{[str(p) for p in files]} (first: {missing[:3]}); run the same command again to answer "
                         "them")  # fmt: skip
    wanted = set(keys)
    merged = shard_path(bench_dir, nf)
    write_predictions(merged, [records[k] for k in keys] + [r for k, r in records.items() if k not in wanted])
    for path in files:
        if path != merged:
            path.unlink(missing_ok=True)
    return records


def _answer_blocks(
    benchmark: Benchmark,
    backend: VideoQABackend,
    store: PredictionStore,
    items: Sequence[tuple[Sample, str]],
    blocks: Sequence[Sequence[int]],
    nf: int,
    batch_size: int,
    max_new_tokens: int,
    gen_max_new_tokens: int,
    progress: bool,
    group: RankGroup,
) -> None:
    """Answer the given items, block by block; a block's batches are cut from its items alone."""
    total = sum(len(b) for b in blocks)
    if not total:
        return
    from tqdm import tqdm

    desc = f"{benchmark.name} {nf} frames" + (f" rank {group.rank}/{group.world_size}" if group.world_size > 1 else "")
    bar = tqdm(total=total, desc=desc, unit="q", disable=not progress, dynamic_ncols=True)
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
        for block in blocks:
            by_media: dict[MediaRef, list[tuple[Sample, str]]] = {}
            for i in block:
                by_media.setdefault(items[i][0].media, []).append(items[i])
            for media, media_items in by_media.items():
                loaded = benchmark.load_media(media, nf)
                features = backend.encode(loaded.frames)
                for s, v in media_items:
                    budget = gen_max_new_tokens if s.generation else max_new_tokens
                    pending.setdefault(budget, []).append(_Pending(s, v, benchmark.build_prompt(s, v, loaded), features))
                    if len(pending[budget]) >= batch_size:
                        flush(budget)
            for budget in list(pending):
                flush(budget)
    finally:
        bar.close()
