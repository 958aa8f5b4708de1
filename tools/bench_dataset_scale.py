"""Does the training dataset scale to millions of records? The tokenised index against the in-memory dataset.

    python tools/bench_dataset_scale.py                                  # 10k, 100k and 1M records (~25 min)
    python tools/bench_dataset_scale.py --sizes 10000,100000 --json figures.json
    python tools/bench_dataset_scale.py --smoke                          # a few hundred records (CI)

Generates JSON-lines data files of N records (40% text, 30% image, 25% video, 5% with a video and an image; about
150 text tokens each with the tiny Qwen2 tokenizer) whose media are a handful of real files, and measures, each
in a fresh process:

* **build**: ``VideoCCAMDataset`` construction on an empty index folder with 1 and 2 builder processes (wall
  and CPU seconds, the CPU of the pool workers included);
* **cached start**: construction when the index exists (wall, CPU), and the **rank's memory growth**: RSS after
  construction and after taking ``modality_length`` (what the length-grouped sampler holds), minus RSS before
  (torch, transformers, datasets and the tokenizer already loaded);
* **workers**: one full pass of a 2-worker DataLoader (batch 32, shuffled, the training collate) over the dataset
  with media decoding replaced by a constant 1-frame clip (decoding is not the subject, and would take days at
  1M), and each worker's **USS growth** between its first and its last batch; ``index pages`` is the part of it
  that is the memory-mapped index read by that worker alone (clean page-cache pages, dropped by the kernel under
  pressure; pages both workers read count in neither's USS), the rest is private memory. PSS and RSS growth are
  in the JSON;
* the same construction, memory and pass for the **in-memory** dataset (every record parsed and tokenised at
  construction, kept as Python objects: the dataset before the index; :class:`InMemoryDataset`) at the sizes of
  ``--in-memory-sizes``.

Targets (1M records on a 2-core machine): cached start <= 10 s; build <= 4 min with 2
processes; rank memory growth <= 300 MiB; each worker's USS growth <= 64 MiB after a full pass. Wall times on a
shared machine swing with its load; CPU times are steadier. Data and indexes go to ``--data-dir`` (the data
files are kept for re-runs; the indexes are removed unless ``--keep-indexes``).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MIB = 2**20
TARGETS = {"cached_start_s": 10.0, "build_2_s": 240.0, "rank_growth_mib": 300.0, "worker_uss_growth_mib": 64.0}
WORDS = ["the", "red", "square", "appears", "first", "then", "a", "green", "circle", "moves", "left", "and", "right",
         "while", "the", "blue", "triangle", "stays", "in", "the", "middle", "of", "the", "video", "until", "the",
         "yellow", "star", "shows", "up", "at", "the", "end"]


# ----------------------------------------------------------------------------------------------------------------
# The in-memory dataset (the reference)
# ----------------------------------------------------------------------------------------------------------------
def _reference_tokens(sample: Any, tokenizer: Any, template: Any, max_length: int, num_queries: int,
                      source: str) -> dict[str, Any]:  # fmt: skip
    """Tokenisation as the dataset did before the index: xtuner's ``template_map_fn`` and ``encode_fn`` (which
    takes at most one placeholder per turn), the text budget ``max_length - n_media * (num_queries - 1)`` cut at
    the end."""
    from videoccam.xtuner_compat import make_xtuner_importable

    make_xtuner_importable()  # xtuner.dataset imports torchvision (videoccam/xtuner_compat.py)
    from xtuner.dataset.map_fns import template_map_fn
    from xtuner.dataset.utils import encode_fn

    from videoccam.dataset.records import RecordError
    from videoccam.model.hf.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX

    n_media = len(sample.media)
    budget = max_length - n_media * (num_queries - 1)
    example = template_map_fn({"conversation": copy.deepcopy(sample.conversation)}, template)
    full = encode_fn(example, tokenizer, max_length=10**9, with_image_token=n_media > 0)
    input_ids, labels = full["input_ids"][:budget], full["labels"][:budget]
    if budget <= 1 or input_ids.count(IMAGE_TOKEN_INDEX) != n_media or all(x == IGNORE_INDEX for x in labels):
        raise RecordError(source, sample.index, sample.record_id, "too long", "too_long")
    return {"input_ids": input_ids, "labels": labels, "truncated": len(full["input_ids"]) > budget}


class InMemoryDataset:
    """The training dataset as it was before the tokenised index: every record parsed, checked and tokenised at
    construction in this process, one ``Sample`` and one dict of token lists kept per record (the reference of
    this benchmark and of ``tests/dataset/test_dataset.py``). Frames are loaded as the dataset loads them.

    Memory and construction time grow linearly with the records (about 8 KB and 0.4-1 ms per record).
    """

    def __init__(self, data_path: str, tokenizer: Any, image_processor: Any, template: Any, num_queries: int,
                 max_length: int, data_root: str | None = None, num_frames: int = 16, on_error: str = "raise",
                 progress: bool = False) -> None:  # fmt: skip
        from tqdm import tqdm

        from videoccam.config import resolve_template
        from videoccam.dataset.frame_processing import BatchFrameProcessor
        from videoccam.dataset.records import (
            RecordError,
            check_media_path,
            check_num_frames,
            load_records,
            parse_record,
        )
        from videoccam.dataset.video_io import FrameSampling

        self.source = str(data_path)
        self.data_root = Path(data_root) if data_root is not None else Path(data_path).parent
        self.template = resolve_template(template)
        self.num_queries = num_queries
        self.frame_sampling = FrameSampling(num_frames=num_frames)
        self.batch_processor = BatchFrameProcessor.from_image_processor(image_processor)
        self.samples, self.tokens, self.skipped = [], [], []
        records = load_records(data_path, on_error=on_error)
        for index, record in enumerate(tqdm(records, desc="in-memory", disable=not progress, mininterval=2)):
            try:
                if isinstance(record, RecordError):
                    raise record
                sample = parse_record(record, index, self.source, self.data_root)
                check_num_frames(sample, num_queries, self.source)
                check_media_path(sample, self.source)
                tokens = _reference_tokens(sample, tokenizer, self.template, max_length, num_queries, self.source)
            except RecordError as error:
                if on_error == "raise":
                    raise
                self.skipped.append(error.as_dict())
                continue
            self.samples.append(sample)
            self.tokens.append(tokens)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def modality_length(self) -> list[int]:
        return [len(t["input_ids"]) + len(s.media) * (self.num_queries - 1) if s.media else -len(t["input_ids"])
                for s, t in zip(self.samples, self.tokens)]  # fmt: skip

    def load_clip(self, item: Any) -> Any:
        clip = self.frame_sampling.load(item.path, item.kind, item.num_frames, output="numpy")
        return self.batch_processor.resize(clip.frames)

    def __getitem__(self, i: int) -> dict[str, Any]:
        import torch

        sample, tokens = self.samples[i], self.tokens[i]
        item = {"input_ids": tokens["input_ids"], "labels": tokens["labels"], "index": sample.index}
        if sample.media:
            clips = [self.load_clip(m) for m in sample.media]
            item.update(pixel_values=torch.cat(clips), num_frames=[c.shape[0] for c in clips],
                        pixel_affine=self.batch_processor.affine)  # fmt: skip
        return item


# ----------------------------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------------------------
def make_media(root: Path) -> dict[str, list[str]]:
    """Two short videos and two images under ``root`` (kept between runs)."""
    import numpy as np
    from PIL import Image

    from videoccam.synthetic.video_writer import write_mp4

    (root / "videos").mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    media = {"video": [], "image": []}
    for i in range(2):
        video, image = root / f"videos/v{i}.mp4", root / f"images/i{i}.jpg"
        if not video.exists():
            write_mp4(rng.integers(0, 256, (24, 64, 64, 3), dtype=np.uint8), video, 8)
        if not image.exists():
            Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(image)
        media["video"].append(f"videos/{video.name}")
        media["image"].append(f"images/{image.name}")
    return media


def make_records(path: Path, n: int, media: dict[str, list[str]], seed: int = 0) -> Path:
    """``n`` records (see the module docstring) written to ``path`` unless it already holds them."""
    import numpy as np

    if path.exists() and path.with_suffix(".done").exists():
        return path
    rng = np.random.default_rng(seed)
    words = np.asarray(WORDS)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for first in range(0, n, 10_000):
            count = min(10_000, n - first)
            question, answer = rng.integers(0, len(words), (count, 18)), rng.integers(0, len(words), (count, 80))
            lines = []
            for k in range(count):
                i = first + k
                kind = ("text",) * 8 + ("image",) * 6 + ("video",) * 5 + ("mixed",)
                kind = kind[i % 20]
                q, a = " ".join(words[question[k]]), " ".join(words[answer[k]])
                record: dict[str, Any] = {"id": f"r{i}"}
                turns = [{"from": "human", "value": q + "?"}, {"from": "gpt", "value": a + "."}]
                if kind == "mixed":  # a video in the first question, an image in the second
                    record["media"] = [{"video": media["video"][i % 2]}, {"image": media["image"][i % 2]}]
                    half = len(a) // 2
                    turns = [{"from": "human", "value": f"<video>\n{q}?"}, {"from": "gpt", "value": a[:half] + "."},
                             {"from": "human", "value": "<image>\nAnd in this picture?"},
                             {"from": "gpt", "value": a[half:] + "."}]  # fmt: skip
                elif kind != "text":
                    record[kind] = media[kind][i % 2]
                    turns[0]["value"] = f"<{kind}>\n{q}?"
                record["conversations"] = turns
                lines.append(json.dumps(record))
            f.write("\n".join(lines) + "\n")
    os.replace(tmp, path)
    path.with_suffix(".done").write_text("")
    return path


# ----------------------------------------------------------------------------------------------------------------
# Measurements (each in a fresh child process)
# ----------------------------------------------------------------------------------------------------------------
def _rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def _memory(pid: int, index_dir: str | None = None) -> dict[str, int]:
    """RSS, PSS, USS and the part of the USS in mappings of files under ``index_dir`` of a process, in bytes."""
    import psutil

    info = psutil.Process(pid).memory_full_info()
    mapped = 0
    if index_dir:
        inside = False
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                fields = line.split()
                if fields and "-" in fields[0] and not fields[0].endswith(":"):  # a mapping's header line
                    inside = len(fields) >= 6 and fields[5].startswith(index_dir)
                elif inside and fields and fields[0] in ("Private_Clean:", "Private_Dirty:"):
                    mapped += int(fields[1]) * 1024
    return {"rss": info.rss, "pss": info.pss, "uss": info.uss, "index_pages": mapped}


def _parts(models: Path) -> dict[str, Any]:
    from transformers import AutoTokenizer, SiglipImageProcessor
    from xtuner.utils import PROMPT_TEMPLATE

    return {"tokenizer": AutoTokenizer.from_pretrained(str(models / "qwen2")),
            "image_processor": SiglipImageProcessor.from_pretrained(str(models / "siglip")),
            "template": PROMPT_TEMPLATE.qwen_chat, "num_queries": 32, "max_length": 512}  # fmt: skip


def _no_decode(dataset_class: type) -> type:
    """``dataset_class`` with every media item loaded as one constant 8x8 frame (the pass measures the rest)."""
    import torch

    frame = torch.zeros(1, 3, 8, 8, dtype=torch.uint8)

    class NoDecode(dataset_class):
        def _load_clip(self, item, where, normalize):  # VideoCCAMDataset
            return frame, [0]

        def load_clip(self, item):  # InMemoryDataset
            return frame

    return NoDecode


def _pass(dataset: Any, index_dir: str | None) -> dict[str, Any]:
    """One full pass of a 2-worker DataLoader in a seeded random order, as training reads; each worker's memory
    after its first batch and after the last batch."""
    import torch

    from videoccam.dataset.collate import videoccam_collate_fn

    loader = torch.utils.data.DataLoader(dataset, batch_size=32, num_workers=2, collate_fn=videoccam_collate_fn,
                                         shuffle=True, generator=torch.Generator().manual_seed(0))  # fmt: skip
    start, cpu = time.perf_counter(), time.process_time()
    iterator = iter(loader)
    next(iterator)
    pids = [w.pid for w in iterator._workers]
    first = [_memory(pid, index_dir) for pid in pids]
    batches = 1
    for _ in range(len(loader) - 1):
        next(iterator)
        batches += 1
    last = [_memory(pid, index_dir) for pid in pids]
    seconds = time.perf_counter() - start
    del iterator
    out: dict[str, Any] = {"batches": batches, "seconds": seconds, "main_cpu_s": time.process_time() - cpu,
                           "uss_first_mib": [m["uss"] / MIB for m in first]}  # fmt: skip
    for key in ("uss", "pss", "rss", "index_pages"):
        out[f"{key}_growth_mib"] = [(b[key] - a[key]) / MIB for a, b in zip(first, last)]
    return out


def child_build(args: dict[str, Any]) -> dict[str, Any]:
    """Build the index with 1 and with 2 processes, each into an empty folder."""
    from videoccam.dataset.dataset import VideoCCAMDataset

    parts, out = _parts(Path(args["models"])), {}
    for workers in (1, 2):
        index_dir = Path(args["index_dir"] + f"_{workers}")
        shutil.rmtree(index_dir, ignore_errors=True)
        start, cpu = time.perf_counter(), time.process_time()
        dataset = VideoCCAMDataset(args["data"], **parts, num_frames=16, index_dir=str(index_dir),
                                   index_workers=workers, progress=False)  # fmt: skip
        seconds, own_cpu = time.perf_counter() - start, time.process_time() - cpu
        meta = dataset.indexes[0].meta
        worker_cpu = meta["build_worker_cpu_seconds"]
        out[f"build_{workers}"] = {
            "seconds": seconds, "cpu_s": own_cpu + sum(worker_cpu), "own_cpu_s": own_cpu, "worker_cpu_s": worker_cpu,
            # the wall time on idle cores if the workers overlap perfectly: this process plus the busiest worker
            "critical_path_cpu_s": own_cpu + max(worker_cpu, default=0.0),
            "build_seconds": meta["build_seconds"], "rows": len(dataset),
        }  # fmt: skip
        if workers == 2:
            os.replace(index_dir, args["index_dir"])  # the cached start opens this one
        else:
            shutil.rmtree(index_dir)
    return out


def child_cached(args: dict[str, Any]) -> dict[str, Any]:
    """Construction on the built index, the rank's memory growth, one 2-worker pass."""
    import datasets  # noqa: F401 - loaded before the baseline, as in a training process (xtuner imports it)

    from videoccam.dataset.dataset import VideoCCAMDataset

    parts = _parts(Path(args["models"]))
    before = _rss()
    start, cpu = time.perf_counter(), time.process_time()
    dataset = _no_decode(VideoCCAMDataset)(args["data"], **parts, num_frames=16, index_dir=args["index_dir"],
                                           progress=False)  # fmt: skip
    seconds, cpu_s = time.perf_counter() - start, time.process_time() - cpu
    constructed = _rss()
    lengths = dataset.modality_length  # held by the sampler
    held = _rss()
    out = {"start_s": seconds, "start_cpu_s": cpu_s, "rows": len(dataset), "growth_mib": (constructed - before) / MIB,
           "growth_with_lengths_mib": (held - before) / MIB}  # fmt: skip
    del lengths
    out["pass"] = _pass(dataset, args["index_dir"])
    return out


def child_in_memory(args: dict[str, Any]) -> dict[str, Any]:
    """The in-memory dataset: construction, memory growth, one 2-worker pass."""
    from videoccam.xtuner_compat import make_xtuner_importable

    make_xtuner_importable()
    from xtuner.dataset.map_fns import template_map_fn  # noqa: F401 - loaded before the baseline

    parts = _parts(Path(args["models"]))
    before = _rss()
    start, cpu = time.perf_counter(), time.process_time()
    dataset = _no_decode(InMemoryDataset)(args["data"], **parts, num_frames=16)
    seconds, cpu_s = time.perf_counter() - start, time.process_time() - cpu
    constructed = _rss()
    lengths = dataset.modality_length
    held = _rss()
    out = {"start_s": seconds, "start_cpu_s": cpu_s, "rows": len(dataset), "growth_mib": (constructed - before) / MIB,
           "growth_with_lengths_mib": (held - before) / MIB}  # fmt: skip
    del lengths
    out["pass"] = _pass(dataset, None)
    return out


CHILDREN = {"build": child_build, "cached": child_cached, "in_memory": child_in_memory}


def _run_child(kind: str, args: dict[str, Any]) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "TOKENIZERS_PARALLELISM": "false"}  # fmt: skip
    process = subprocess.run([sys.executable, __file__, "--child", kind, json.dumps(args)], capture_output=True,
                             text=True, env=env, check=False)  # fmt: skip
    if process.returncode != 0:
        raise SystemExit(f"bench child {kind} failed:\n{process.stderr[-4000:]}")
    return json.loads(process.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------------------------
def _mib(values: Sequence[float]) -> str:
    return " / ".join(str(round(v)) for v in values)


def report(results: dict[int, dict[str, Any]]) -> str:
    lines = [("records    what        build 1 proc      build 2 procs     start            rank growth  "
              "worker USS growth (index pages)   pass")]
    lines.append(" " * 23 + "wall s / CPU s    wall s / CPU s    wall s / CPU s   MiB          MiB per worker"
                 + " " * 19 + "s")
    for n, r in sorted(results.items()):
        c = r["cached"]
        b1, b2 = r["build"]["build_1"], r["build"]["build_2"]
        lines.append(
            f"{n:>9,}  index       {b1['seconds']:7.1f} / {b1['cpu_s']:6.1f}  {b2['seconds']:7.1f} / {b2['cpu_s']:6.1f}  "
            f"{c['start_s']:6.2f} / {c['start_cpu_s']:5.2f}  {c['growth_with_lengths_mib']:8.0f}     "
            f"{_mib(c['pass']['uss_growth_mib']):>9} ({_mib(c['pass']['index_pages_growth_mib'])})"
            f"{'':14}{c['pass']['seconds']:6.1f}"
        )
        if "in_memory" in r:
            m = r["in_memory"]
            lines.append(
                f"{n:>9,}  in-memory   {'':34}{m['start_s']:6.2f} / {m['start_cpu_s']:5.2f}  "
                f"{m['growth_with_lengths_mib']:8.0f}     {_mib(m['pass']['uss_growth_mib']):>9}{'':22}"
                f"{m['pass']['seconds']:6.1f}"
            )
    lines.append("build CPU with 2 processes: this process + each worker; critical path (this process + the busiest "
                 "worker: the wall time on 2 idle cores):")  # fmt: skip
    for n, r in sorted(results.items()):
        b2 = r["build"]["build_2"]
        lines.append(f"{n:>9,}  {b2['own_cpu_s']:.1f} + {' + '.join(f'{t:.1f}' for t in b2['worker_cpu_s']) or '0'} s; "
                     f"critical path {b2['critical_path_cpu_s']:.1f} s")  # fmt: skip
    largest = results[max(results)]
    c, b2 = largest["cached"], largest["build"]["build_2"]
    checks = [
        ("cached start", c["start_s"], TARGETS["cached_start_s"], "s"),
        ("build with 2 processes", b2["seconds"], TARGETS["build_2_s"], "s"),
        ("build with 2 processes, critical path CPU", b2["critical_path_cpu_s"], TARGETS["build_2_s"], "s"),
        ("rank memory growth", c["growth_with_lengths_mib"], TARGETS["rank_growth_mib"], "MiB"),
        ("worker USS growth", max(c["pass"]["uss_growth_mib"]), TARGETS["worker_uss_growth_mib"], "MiB"),
        ("worker USS growth without index pages",
         max(u - p for u, p in zip(c["pass"]["uss_growth_mib"], c["pass"]["index_pages_growth_mib"])),
         TARGETS["worker_uss_growth_mib"], "MiB"),
    ]  # fmt: skip
    lines.append(f"targets at {max(results):,} records:")
    for name, value, target, unit in checks:
        lines.append(f"  {name:<40} {value:8.1f} {unit:<3} (target <= {target:g}) {'met' if value <= target else 'NOT met'}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="\n\n".join(__doc__.split("\n\n")[1:]),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--sizes", default="10000,100000,1000000", help="records per data file (default: %(default)s)")
    parser.add_argument("--in-memory-sizes", default="10000,100000",
                        help="sizes that also run the in-memory dataset (default: %(default)s)")
    parser.add_argument("--data-dir", default="work_dirs/bench_dataset_scale", help="data and indexes")
    parser.add_argument("--tiny-models", default="work_dirs/tiny_models", help="tokenizer and image processor")
    parser.add_argument("--keep-indexes", action="store_true", help="keep the built indexes")
    parser.add_argument("--json", help="also write the figures as JSON")
    parser.add_argument("--smoke", action="store_true", help="300 records, both datasets (CI)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        result = CHILDREN[args.child[0]](json.loads(args.child[1]))
        print(json.dumps(result))
        return 0
    from videoccam.synthetic.tiny_models import make_tiny_models

    sizes = [300] if args.smoke else [int(s) for s in args.sizes.split(",") if s]
    in_memory = set(sizes) if args.smoke else {int(s) for s in args.in_memory_sizes.split(",") if s}
    data_dir, models = Path(args.data_dir), Path(args.tiny_models)
    make_tiny_models(models, pretrain_steps=0)  # no-op when present
    media = make_media(data_dir)
    results: dict[int, dict[str, Any]] = {}
    for n in sizes:
        data = make_records(data_dir / f"records_{n}.jsonl", n, media)
        common = {"data": str(data), "models": str(models), "index_dir": str(data_dir / f"index_{n}")}
        print(f"{n:,} records: building ...", flush=True)
        results[n] = {"build": _run_child("build", common)}
        print(f"{n:,} records: cached start and a 2-worker pass ...", flush=True)
        results[n]["cached"] = _run_child("cached", common)
        if n in in_memory:
            print(f"{n:,} records: the in-memory dataset ...", flush=True)
            results[n]["in_memory"] = _run_child("in_memory", common)
        if not args.keep_indexes:
            shutil.rmtree(common["index_dir"], ignore_errors=True)
    print(report(results))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({str(k): v for k, v in results.items()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
