"""Evaluation throughput with 1 and N processes: questions per second of tools/eval.py, side by side in one run.

    python tools/bench_eval_scale.py                  # tiny random model, synthetic MVBench (8 questions per task)
    python tools/bench_eval_scale.py --model OUT_HF --data data/MVBench --procs 1,8 --device auto --num-frames 16

Each repeat runs ``tools/eval.py mvbench`` once per process count, in a fresh output folder and in alternating
order between repeats (so machine load affects all alike): one process as ``python tools/eval.py``, N as
``torchrun --standalone --nproc_per_node=N tools/eval.py``. Per process count it reports the median over repeats of

* answering questions/s: questions / the slowest rank's answering time (decode, encode, generate; read from the
  run's log, so start-up and model loading are excluded);
* end-to-end questions/s: questions / wall time of the whole command (imports, model loading, merging included);
* CPU seconds of the command and all its processes;

and the speed-ups over the first process count. Every run's merged predictions must equal the first run's (the
same batches whatever the number of processes); the tool exits non-zero otherwise. On CPU each process gets
``--threads`` threads (default 1: one core per process, as one GPU per process on a GPU machine; the speed-up then
shows how well the work is shared, provided the machine has a free core per process). Without ``--model`` a tiny random Video-CCAM is written under ``--work-dir`` on first use
(``tools/make_tiny_models.py`` models, ``configs/tiny/videoccam_tiny_qwen2_stage2.py``); without ``--data``, a
synthetic MVBench layout (``videoccam/synthetic/benchmarks.py``). ``--smoke``: the scripted backend, two questions
per task, one repeat (plumbing only, for CI).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
STAGE2 = ROOT / "configs/tiny/videoccam_tiny_qwen2_stage2.py"
ANSWERED = re.compile(r"mvbench, \d+ frames: (\d+) answers in ([\d.]+) s")
DIST_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "ROLE_RANK", "MASTER_ADDR",
             "MASTER_PORT")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--procs", default="1,2", help="process counts, comma-separated (default 1,2)")
    p.add_argument("--repeats", type=int, default=3, help="runs of each process count (default 3)")
    p.add_argument("--model", help="converted model folder (default: a tiny random model under --work-dir)")
    p.add_argument("--data", help="MVBench folder (default: a synthetic layout under --work-dir)")
    p.add_argument("--questions-per-task", type=int, default=8, help="synthetic MVBench size (default 8 x 20 tasks)")
    p.add_argument("--num-frames", type=int, default=8, help="frames per video (default 8)")
    p.add_argument("--batch-size", type=int, default=1, help="questions per generate call (default 1)")
    p.add_argument("--max-new-tokens", type=int, default=8, help="reply budget (default 8)")
    p.add_argument("--device", default="cpu", help="cpu (default), auto or cuda")
    p.add_argument("--threads", type=int, default=1, help="threads per process on CPU (default 1)")
    p.add_argument("--work-dir", default="work_dirs/bench_eval_scale", help="models, data and runs go here")
    p.add_argument("--json", help="also write the figures to this file")
    p.add_argument("--smoke", action="store_true", help="scripted backend, tiny data, one repeat (plumbing)")
    return p


def tiny_model(work: Path) -> Path:
    """A tiny random stage-2 Video-CCAM as a converted folder (written once)."""
    folder = work / "tiny_hf"
    if (folder / "config.json").is_file():
        return folder
    from videoccam import quiet, xtuner_compat

    quiet.install()
    xtuner_compat.install()  # entry point: builds a model from an xtuner config
    import torch
    from mmengine.config import Config
    from xtuner.registry import BUILDER

    from videoccam.export.hf_folder import save_hf_folder
    from videoccam.synthetic.tiny_models import make_tiny_models

    models = make_tiny_models(work / "tiny_models", pretrain_steps=0, names=["qwen2", "siglip"])
    llm, vision = str(models["qwen2"]), str(models["siglip"])
    cfg = Config.fromfile(str(STAGE2))
    cfg.merge_from_dict({
        "model.llm.pretrained_model_name_or_path": llm, "model.visual_encoder.pretrained_model_name_or_path": vision,
        "tokenizer.pretrained_model_name_or_path": llm, "image_processor.pretrained_model_name_or_path": vision,
        "train_dataloader.dataset.tokenizer.pretrained_model_name_or_path": llm,
        "train_dataloader.dataset.image_processor.pretrained_model_name_or_path": vision, "model.pretrained_pth": None,
    })  # fmt: skip
    torch.manual_seed(0)
    model = BUILDER.build(cfg.model).eval()
    save_hf_folder(model, cfg, folder)
    return folder


def synthetic_mvbench(work: Path, questions_per_task: int) -> Path:
    from videoccam.synthetic.benchmarks import make_mvbench

    root = work / f"mvbench_q{questions_per_task}"
    if not (root / "json").is_dir():
        make_mvbench(root, questions_per_task=questions_per_task)
    return root


def run_once(nproc: int, eval_args: list[str], out: Path, threads: int | None) -> dict[str, Any]:
    """One ``tools/eval.py`` run; its wall time, CPU time (all its processes), questions and answering time."""
    shutil.rmtree(out, ignore_errors=True)
    launcher = [sys.executable] if nproc == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]  # fmt: skip
    env = {k: v for k, v in os.environ.items()  # a launcher's variables of this process must not leak into the runs
           if k not in DIST_VARS and not k.startswith(("TORCHELASTIC_", "OMP_NUM_THREADS"))}  # fmt: skip
    env.update(PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    run = subprocess.run([*launcher, str(ROOT / "tools/eval.py"), *eval_args, "--out", str(out)], cwd=ROOT, env=env,
                         capture_output=True, text=True)  # fmt: skip
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if run.returncode != 0:
        raise RuntimeError(f"tools/eval.py with {nproc} process(es) failed:\n{run.stderr[-3000:]}")
    found = ANSWERED.findall(run.stderr)
    if len(found) != 1:
        raise RuntimeError(f"expected one 'N answers in T s' line in the log, found {found}:\n{run.stderr[-2000:]}")
    questions, seconds = int(found[0][0]), float(found[0][1])
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    predictions = next((out / "mvbench").glob("predictions_f*.jsonl")).read_text()
    return {"procs": nproc, "questions": questions, "answer_s": seconds, "wall_s": wall, "cpu_s": cpu,
            "predictions": predictions}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns 0, or 1 when runs disagree."""
    args = build_parser().parse_args(argv)
    procs = [int(x) for x in args.procs.split(",") if x.strip()]
    if not procs or min(procs) < 1:
        raise SystemExit(f"--procs expects positive integers, got {args.procs!r}")
    work = Path(args.work_dir)
    repeats = 1 if args.smoke else args.repeats
    data = Path(args.data) if args.data else synthetic_mvbench(work, 2 if args.smoke else args.questions_per_task)
    if args.smoke:
        model_args = ["--scripted-backend", "hash"]
    else:
        model_args = ["--model", str(Path(args.model) if args.model else tiny_model(work)), "--device", args.device]
    eval_args = ["mvbench", *model_args, "--data", str(data), "--num-frames", str(args.num_frames), "--batch-size",
                 str(args.batch_size), "--max-new-tokens", str(args.max_new_tokens), "--no-progress"]  # fmt: skip
    cores = os.cpu_count() or 1
    threads = {n: args.threads for n in procs}

    runs: dict[int, list[dict[str, Any]]] = {n: [] for n in procs}
    for rep in range(repeats):
        for n in procs if rep % 2 == 0 else procs[::-1]:
            result = run_once(n, eval_args, work / "runs" / f"p{n}", threads[n] if args.device == "cpu" else None)
            runs[n].append(result)
            print(f"repeat {rep + 1}/{repeats}, {n} process(es): {result['questions']} answers in "
                  f"{result['answer_s']:.2f} s, command {result['wall_s']:.1f} s wall, {result['cpu_s']:.1f} CPU s",
                  flush=True)  # fmt: skip
    reference = runs[procs[0]][0]["predictions"]
    same = all(r["predictions"] == reference for rs in runs.values() for r in rs)

    rows = []
    for n in procs:
        rs = runs[n]
        rows.append({"procs": n, "threads": threads[n] if args.device == "cpu" else None,
                     "questions": rs[0]["questions"],
                     "answer_qps": statistics.median(r["questions"] / r["answer_s"] for r in rs),
                     "end_to_end_qps": statistics.median(r["questions"] / r["wall_s"] for r in rs),
                     "cpu_s": statistics.median(r["cpu_s"] for r in rs)})  # fmt: skip
    base = rows[0]
    for row in rows:
        row["answer_speedup"] = row["answer_qps"] / base["answer_qps"]
        row["end_to_end_speedup"] = row["end_to_end_qps"] / base["end_to_end_qps"]

    from videoccam.evaluation.report import format_table

    print(f"\ntools/eval.py mvbench, {rows[0]['questions']} questions, {args.num_frames} frames, batch size "
          f"{args.batch_size}, {cores} cores, median of {repeats} run(s)")  # fmt: skip
    header = ["processes", "threads each", "answering q/s", "speed-up", "end-to-end q/s", "speed-up", "CPU s"]
    print(format_table(header, [[r["procs"], r["threads"], r["answer_qps"], r["answer_speedup"], r["end_to_end_qps"],
                                 r["end_to_end_speedup"], r["cpu_s"]] for r in rows]))  # fmt: skip
    print(f"predictions of every run equal: {same}")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "predictions_equal": same, "cores": cores,
                                               "repeats": repeats}, indent=2))  # fmt: skip
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
