"""Stage 1 with and without the frozen-SigLIP feature cache: epoch times and loss curves, side by side.

    python tools/bench_feature_cache.py                  # the tiny stage 1 on CPU, 3 epochs each way
    python tools/bench_feature_cache.py --epochs 4 --json figures.json

Trains ``--config`` (default: the tiny stage-1 recipe; its models and data are made first if missing) twice
through mmengine's Runner, as ``xtuner train`` does, with the same seed and data order:

* ``uncached``: every epoch decodes, resizes and runs SigLIP on every video;
* ``cached``: the same with ``videoccam.dataset.feature_cache`` on, starting from an empty cache: the first
  epoch computes and stores every sample's features, later epochs read them instead of decoding and
  running SigLIP.

Prints each epoch's wall and CPU time (without the 2 s that mmengine's iteration loop sleeps at every epoch
boundary, which would dominate a tiny epoch), the ratio first cached epoch / later cached epochs (target >= 5),
the largest difference between the two per-iteration loss curves (target <= 1e-5) and the cache's size on
disk.
``--smoke``: 2 epochs on a few samples (CI).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = "configs/tiny/videoccam_tiny_qwen2_stage1.py"


def _recorder():
    from mmengine.hooks import Hook

    class IterRecorder(Hook):
        """The end time and exact loss of every iteration (xtuner's loop is iteration-based: epochs are runs of
        ``len(dataloader)`` iterations, each including its data loading)."""

        priority = "VERY_LOW"

        def __init__(self) -> None:
            self.ends: list[tuple[float, float]] = []
            self.losses: list[float] = []
            self.start = (0.0, 0.0)

        def before_train(self, runner) -> None:
            self.start = (time.perf_counter(), time.process_time())

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
            self.ends.append((time.perf_counter(), time.process_time()))
            self.losses.append(float(outputs["loss"]))

    return IterRecorder()


def train(args: argparse.Namespace, work_dir: Path, cache_dir: Path | None) -> dict:
    from mmengine.runner import Runner

    from videoccam.config import load_config
    from videoccam.dataset.feature_cache import enable_feature_cache

    models, data = Path(args.tiny_models), Path(args.data)
    options = {
        "model.llm.pretrained_model_name_or_path": str(models / "qwen2"),
        "model.visual_encoder.pretrained_model_name_or_path": str(models / "siglip"),
        "train_dataloader.dataset.tokenizer.pretrained_model_name_or_path": str(models / "qwen2"),
        "train_dataloader.dataset.image_processor.pretrained_model_name_or_path": str(models / "siglip"),
        "train_dataloader.dataset.data_path": str(data / "captions.json"),
        "train_dataloader.dataset.data_root": str(data),
        "train_dataloader.num_workers": args.num_workers,
        "train_cfg.max_epochs": args.epochs,
        "default_hooks.checkpoint.interval": 10**9,  # no checkpoint: both runs time the same work
        "default_hooks.checkpoint.save_last": False,
        "default_hooks.logger.interval": 10**9,
        "work_dir": str(work_dir),
        "randomness.seed": 0,
    }
    if args.max_samples:
        options["train_dataloader.dataset.max_dataset_length"] = args.max_samples
    cfg = load_config(args.config, options)
    cfg.launcher = "none"
    if cache_dir is not None:
        enable_feature_cache(cfg, cache_dir)
    runner = Runner.from_cfg(cfg)
    recorder = _recorder()
    runner.register_hook(recorder)
    from mmengine.runner import loops

    class NoEpochSleep:  # mmengine's iteration loop sleeps 2 s at every epoch boundary ("prevent deadlock")
        def __getattr__(self, name):
            return getattr(time, name)

        @staticmethod
        def sleep(seconds: float) -> None:
            pass

    loops.time = NoEpochSleep()
    try:
        runner.train()
    finally:
        loops.time = time
    per_epoch = len(runner.train_dataloader)
    marks = [recorder.start] + recorder.ends[per_epoch - 1 :: per_epoch]
    return {"epoch_seconds": [b[0] - a[0] for a, b in zip(marks, marks[1:])],
            "epoch_cpu_seconds": [b[1] - a[1] for a, b in zip(marks, marks[1:])],
            "losses": recorder.losses}  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="a stage-1 config (default: %(default)s)")
    parser.add_argument("--tiny-models", default="work_dirs/tiny_models", help="made if missing")
    parser.add_argument("--data", default="work_dirs/synthetic_data", help="made if missing")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--max-samples", type=int, default=None, help="train on the first N records only")
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader workers")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--smoke", action="store_true", help="2 epochs on 8 records (plumbing check)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.smoke:
        args.epochs, args.max_samples = 2, args.max_samples or 8
    import os

    os.chdir(ROOT)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from videoccam import quiet, xtuner_compat

    quiet.install()
    xtuner_compat.install()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from videoccam.synthetic.tiny_models import make_tiny_models

    make_tiny_models(Path(args.tiny_models))  # no-op when present
    if not (Path(args.data) / "captions.json").is_file():
        sys.path.insert(0, str(ROOT / "tools"))
        import make_synthetic_data

        if make_synthetic_data.main(["--out", args.data]) != 0:
            return 1
    with tempfile.TemporaryDirectory(prefix="bench_feature_cache_") as tmp:
        tmp = Path(tmp)
        uncached = train(args, tmp / "uncached", None)
        cache_dir = tmp / "cache"
        cached = train(args, tmp / "cached", cache_dir)
        files = list(cache_dir.rglob("*.safetensors"))
        disk = sum(f.stat().st_size for f in files)
        from safetensors import safe_open

        frames = 0
        for f in files:
            with safe_open(str(f), "pt") as handle:
                frames += handle.get_slice("features").get_shape()[0]
        shutil.rmtree(cache_dir, ignore_errors=True)

    def ratios(key: str) -> tuple[float, float]:
        later = cached[key][1:] or cached[key]
        first_vs_later = cached[key][0] / statistics.median(later)
        return first_vs_later, statistics.median(uncached[key][1:] or uncached[key]) / statistics.median(later)

    speedup, vs_uncached = ratios("epoch_seconds")
    cpu_speedup, cpu_vs_uncached = ratios("epoch_cpu_seconds")
    diff = max(abs(a - b) for a, b in zip(uncached["losses"], cached["losses"]))
    print(f"{args.config}: {args.epochs} epochs, {len(cached['losses']) // args.epochs} iterations per epoch, "
          f"{torch.get_num_threads()} threads, num_workers={args.num_workers}")
    print(f"  {'epoch':>5} {'uncached s':>11} {'cached s':>9} {'uncached CPU-s':>15} {'cached CPU-s':>13}")
    for i in range(args.epochs):
        print(f"  {i + 1:>5} {uncached['epoch_seconds'][i]:>11.2f} {cached['epoch_seconds'][i]:>9.2f} "
              f"{uncached['epoch_cpu_seconds'][i]:>15.2f} {cached['epoch_cpu_seconds'][i]:>13.2f}")
    print(f"  cache: {len(files)} files, {frames} frames, {disk / 2**20:.1f} MiB "
          f"({disk / max(frames, 1) / 1024:.1f} KiB per frame)")
    print(f"  loss curves: {len(cached['losses'])} iterations, max |cached - uncached| = {diff:.2e} (target <= 1e-5)")
    print(f"  later uncached epochs / later cached epochs: {vs_uncached:.2f}x (wall), {cpu_vs_uncached:.2f}x (CPU)")
    print(f"first cached epoch / later cached epochs: {speedup:.2f}x (wall), {cpu_speedup:.2f}x (CPU time); "
          "target >= 5")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "uncached": uncached, "cached": cached, "speedup": speedup, "vs_uncached": vs_uncached,
            "cpu_speedup": cpu_speedup, "cpu_vs_uncached": cpu_vs_uncached,
            "max_loss_diff": diff, "cache_bytes": disk, "cache_files": len(files), "cache_frames": frames,
        }, indent=2) + "\n")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
