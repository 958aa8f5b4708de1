"""Does data loading keep up? Frames/s of VideoCCAMDataset.__getitem__ vs raw decord on the same frames.

    python tools/bench_dataloader.py                      # 224x224, 300-frame synthetic videos, 16 frames each

Measures, side by side in one run (interleaved item by item, so machine load affects all alike):

* raw decord: ``decord.VideoReader(path, num_threads=T).get_batch(indices).asnumpy()``, with ``indices`` the
  frames the dataset's sampler takes (same files, same indices, same decoder threads);
* the dataset: ``VideoCCAMDataset.__getitem__`` = decode + preprocessing with SigLIP's processor settings
  (resize to --image-size, bicubic, mean = std = 0.5) as training runs it: PIL's resize, exactly as the
  processor does it, giving uint8 frames that the model normalises on its device (``normalize_in_model``);
* ``dataset_float32``: the same with the normalisation in the loader (``normalize_in_model=False``: float32
  ``pixel_values``, what the dataset returned before the loader kept uint8 frames), unless ``--skip-float``;
* the dataset with ``fast_image_processing=False`` (the Hugging Face image processor on PIL frames), for
  reference, unless ``--skip-hf``;
* with ``--with-torch-resize``: the dataset resizing with torch's uint8 antialiased ``interpolate`` instead of
  PIL (an earlier path; fast, but 1-2 uint8 steps away from the processor on about 0.5% of the
  values), to show what PIL's exact resize costs in the same run;
* with ``--with-decode-resize``: raw decord followed by PIL's resize of the decoded frames and nothing else,
  the floor of any exact loader: the ratio dataset / this shows the dataset's own overhead.

and prints frames per second of wall time and per CPU-second (all threads and worker processes; steadier
than wall time on a busy machine) of each, and the ratio dataset / raw decord (the project's target is
>= 0.8). With --num-workers N > 0 each side runs through a torch DataLoader with N worker processes. The videos
(coloured shapes as in videoccam/synthetic/shapes.py, plus light noise so that frames are not trivially
compressible; H.264 with keyframes every --gop frames) are generated on first use under --data-dir.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _size(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    return int(width), int(height or width)


def _first(batch: list) -> Any:
    return batch[0]


class RawDecord:
    """Map-style dataset: raw decord reads of ``(path, indices)`` pairs (frames as a uint8 numpy array)."""

    def __init__(self, items: list[tuple[str, list[int]]], num_threads: int) -> None:
        self.items, self.num_threads = items, num_threads

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        import decord

        path, indices = self.items[i]
        reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=self.num_threads)
        return reader.get_batch(indices).asnumpy()  # [t, h, w, 3] uint8


class RawDecordResize(RawDecord):
    """Raw decord reads followed by PIL's resize of each frame (the processor's call), nothing else."""

    def __init__(self, items: list[tuple[str, list[int]]], num_threads: int, size: tuple[int, int]) -> None:
        super().__init__(items, num_threads)
        self.size = size

    def __getitem__(self, i: int):
        import numpy as np
        from PIL import Image

        height, width = self.size
        frames = super().__getitem__(i)
        return np.stack([np.asarray(Image.fromarray(f).resize((width, height), Image.Resampling.BICUBIC))
                         for f in frames])  # fmt: skip


class TorchResizeProcessor:
    """Reference only: resize with torch's uint8 antialiased interpolate, then the dataset's normalisation."""

    def __init__(self, processor: Any) -> None:
        self.processor = processor
        self.affine = processor.affine

    def resize(self, frames: Any):
        import numpy as np
        import torch
        import torch.nn.functional as F

        x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)  # [t, 3, h, w] uint8
        if self.processor.size is not None and tuple(x.shape[-2:]) != self.processor.size:
            x = F.interpolate(x, size=self.processor.size, mode=self.processor.resample, antialias=True)
        return x

    def __call__(self, frames: Any):
        return self.processor.normalize(self.resize(frames))


def _frames(item: Any) -> int:
    if isinstance(item, dict):
        pixel_values = item["data"]["pixel_values"] if "data" in item else item["pixel_values"]
        return int(pixel_values.shape[0])
    return int(item.shape[0])


def _write_bench_video(path: Path, rng, frames: int, width: int, height: int, fps: int, gop: int) -> None:
    """A coloured-shapes video (videoccam/synthetic/shapes.py's renderer) encoded with H.264 at the given GOP."""
    import numpy as np

    from videoccam.synthetic import shapes as synth
    from videoccam.synthetic.video_writer import write_mp4

    side = max(width, height)
    count = rng.randint(2, 4)
    events = [
        synth.ShapeEvent(color, rng.choice(synth.SHAPES), j * frames // count, (j + 1) * frames // count,
                         (rng.uniform(0.3, 0.7) * side, rng.uniform(0.3, 0.7) * side),
                         (rng.uniform(0.3, 0.7) * side, rng.uniform(0.3, 0.7) * side), side * 0.15)
        for j, color in enumerate(rng.sample(list(synth.COLORS), count))
    ]  # fmt: skip
    scene = synth.VideoScene(path.stem, path.name, num_frames=frames, fps=fps, size=side, events=events)
    top, left = (side - height) // 2, (side - width) // 2
    video = synth.render_video(scene)[:, top : top + height, left : left + width]  # [t, height, width, 3]
    noise = np.random.default_rng(rng.randint(0, 2**31)).integers(0, 12, video.shape, dtype=np.uint8)
    video = video + noise  # a little sensor-like noise, so that P-frames are not free to decode
    write_mp4(video, path, fps, encoder="pyav", x264_options={"crf": "23", "g": str(gop)})


def prepare(args: argparse.Namespace) -> tuple[Path, Path]:
    """Bench videos and a data file with one record per video; returns (data file, tiny models folder)."""
    import random

    from videoccam.synthetic.tiny_models import make_tiny_models

    width, height = args.size
    data_dir = Path(args.data_dir) / f"{width}x{height}_{args.frames}f_{args.video_fps}fps_gop{args.gop}"
    data_file = data_dir / f"bench_{args.num_videos}.jsonl"
    if not data_file.exists():
        (data_dir / "videos").mkdir(parents=True, exist_ok=True)
        rng = random.Random(0)
        records = []
        for i in range(args.num_videos):
            path = data_dir / "videos" / f"bench_{i:03d}.mp4"
            if not path.exists():
                _write_bench_video(path, rng, args.frames, width, height, args.video_fps, args.gop)
            records.append({"id": path.stem, "video": f"videos/{path.name}",
                            "conversations": [{"from": "human", "value": "<video>\nDescribe the video."},
                                              {"from": "gpt", "value": "A red square appears."}]})  # fmt: skip
        data_file.write_text("".join(json.dumps(r) + "\n" for r in records))
    models = Path(args.tiny_models)
    make_tiny_models(models)  # no-op when present
    return data_file, models


def build_datasets(args: argparse.Namespace, data_file: Path, models: Path) -> dict[str, Any]:
    from transformers import AutoTokenizer, SiglipImageProcessor
    from xtuner.utils import PROMPT_TEMPLATE

    from videoccam.dataset.dataset import VideoCCAMDataset

    processor = SiglipImageProcessor(size={"height": args.image_size, "width": args.image_size})
    common = dict(  # noqa: C408 - keyword arguments of VideoCCAMDataset
        data_path=str(data_file),
        tokenizer=AutoTokenizer.from_pretrained(str(models / "qwen2")),
        image_processor=processor,
        template=PROMPT_TEMPLATE.qwen_chat,
        num_queries=max(64, args.num_frames, args.max_frames or 0),
        max_length=4096,
        num_frames=args.num_frames,
        sampling=args.sampling,
        target_fps=args.fps,
        max_frames=args.max_frames,
        decode_threads=args.decode_threads,
        video_backend="decord",
    )
    fast = VideoCCAMDataset(**common)
    if fast.batch_processor is None:
        raise SystemExit("the batched preprocessing did not engage for SigLIP's processor settings")
    datasets = {"dataset": fast}
    if not fast.normalize_in_model:
        raise SystemExit("the dataset did not engage normalize_in_model")
    if not args.skip_float:
        datasets["dataset_float32"] = VideoCCAMDataset(**common, normalize_in_model=False)
    if not args.skip_hf:
        datasets["dataset_hf_processor"] = VideoCCAMDataset(**common, fast_image_processing=False)
    if args.with_torch_resize:
        torch_resize = VideoCCAMDataset(**common)
        torch_resize.batch_processor = TorchResizeProcessor(torch_resize.batch_processor)
        datasets["dataset_torch_resize"] = torch_resize
    items = []
    for i in range(len(fast)):
        (media,) = fast.sample(i).media
        clip = fast.frame_sampling.load(media.path, "video", media.num_frames, output="numpy")
        items.append((str(media.path), clip.indices))
    datasets["raw_decord"] = RawDecord(items, args.decode_threads)
    if args.with_decode_resize:
        datasets["raw_decord_pil_resize"] = RawDecordResize(items, args.decode_threads, fast.batch_processor.size)
    return datasets


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (DataLoader workers), all threads."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def measure(datasets: dict[str, Any], repeats: int, num_workers: int) -> dict[str, dict[str, float]]:
    """Frames, wall seconds and CPU seconds per loader, interleaved so that load changes hit all alike.

    CPU time counts every thread (decord decodes in its own threads) and, with workers, the worker processes;
    it is far less disturbed than wall time by other programs on a shared machine.
    """
    import torch

    from videoccam.dataset.collate import videoccam_collate_fn

    totals = {name: {"frames": 0, "seconds": 0.0, "cpu_seconds": 0.0} for name in datasets}
    names = list(datasets)
    if num_workers == 0:
        n = len(datasets["raw_decord"])
        for name in names:  # warm-up: file cache, lazy imports
            datasets[name][0]
        for r in range(repeats):
            for i in range(n):
                order = names if (r + i) % 2 == 0 else names[::-1]
                for name in order:
                    cpu, start = _cpu_seconds(), time.perf_counter()
                    item = datasets[name][i]
                    totals[name]["seconds"] += time.perf_counter() - start
                    totals[name]["cpu_seconds"] += _cpu_seconds() - cpu
                    totals[name]["frames"] += _frames(item)
        return totals
    # Each pass reads every video `repeats` times, so that starting the workers is a small part of it.
    order = [i for _ in range(repeats) for i in range(len(datasets["raw_decord"]))]
    for r in range(2):
        for name in names if r % 2 == 0 else names[::-1]:
            # the dataset goes through the training collate (shared-memory batches), raw decord returns arrays
            collate = _first if name.startswith("raw_decord") else videoccam_collate_fn
            loader = torch.utils.data.DataLoader(datasets[name], batch_size=1, num_workers=num_workers,
                                                 sampler=order, collate_fn=collate)  # fmt: skip
            cpu, start = _cpu_seconds(), time.perf_counter()
            frames = sum(_frames(item) for item in loader)
            totals[name]["seconds"] += time.perf_counter() - start
            del loader  # workers exit, so their CPU time is counted
            totals[name]["cpu_seconds"] += _cpu_seconds() - cpu
            totals[name]["frames"] += frames
    return totals


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--data-dir", default="work_dirs/bench_data", help="bench videos (made on first use)")
    parser.add_argument("--tiny-models", default="work_dirs/tiny_models", help="tokenizer source (made if missing)")
    parser.add_argument("--num-videos", type=int, default=8)
    parser.add_argument("--frames", type=int, default=300, help="frames per generated video")
    parser.add_argument("--size", type=_size, default=(224, 224), help="generated video WxH (default 224x224)")
    parser.add_argument("--video-fps", type=int, default=30, help="generated video frame rate")
    parser.add_argument("--gop", type=int, default=30,
                        help="generated video keyframe interval in frames (default %(default)s: one per second)")
    parser.add_argument("--num-frames", type=int, default=16, help="frames per sample (uniform)")
    parser.add_argument("--sampling", choices=("uniform", "fps"), default="uniform")
    parser.add_argument("--fps", type=float, default=None, help="target fps for --sampling fps")
    parser.add_argument("--max-frames", type=int, default=None, help="frame cap for --sampling fps")
    parser.add_argument("--image-size", type=int, default=384, help="processor output size (SigLIP-so400m: 384)")
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader workers (0: in this process)")
    parser.add_argument("--decode-threads", type=int, default=1, help="decord threads per video, both sides")
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="torch intra-op threads (DataLoader workers use 1; default %(default)s)")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=3, help="passes over the videos")
    parser.add_argument("--skip-hf", action="store_true", help="do not measure the HF image processor path")
    parser.add_argument("--skip-float", action="store_true",
                        help="do not measure the dataset normalising to float32 in the loader")
    parser.add_argument("--with-decode-resize", action="store_true",
                        help="also measure raw decord + PIL resize only (the floor of an exact loader)")
    parser.add_argument("--with-torch-resize", action="store_true",
                        help="also measure the dataset with torch's uint8 resize (an earlier path)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    if args.sampling == "fps" and not args.fps:
        parser.error("--sampling fps needs --fps")
    os.chdir(ROOT)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from videoccam import quiet, xtuner_compat

    quiet.install()
    xtuner_compat.install()
    import torch

    torch.set_num_threads(args.torch_threads)
    data_file, models = prepare(args)
    datasets = build_datasets(args, data_file, models)
    totals = measure(datasets, args.repeats, args.num_workers)
    rate = {name: t["frames"] / t["seconds"] for name, t in totals.items()}
    cpu_rate = {name: t["frames"] / max(t["cpu_seconds"], 1e-9) for name, t in totals.items()}
    ratio = rate["dataset"] / rate["raw_decord"]
    cpu_ratio = cpu_rate["dataset"] / cpu_rate["raw_decord"]
    print(f"videos: {len(datasets['raw_decord'])} x {args.frames} frames {args.size[0]}x{args.size[1]} "
          f"{args.video_fps} fps GOP {args.gop}, {args.sampling} sampling {args.num_frames} frames, processor output "
          f"{args.image_size}x{args.image_size}, num_workers={args.num_workers}, decode_threads={args.decode_threads}, "
          f"torch_threads={args.torch_threads}, repeats={args.repeats}")  # fmt: skip
    print(f"  {'':<22} {'frames/s (wall)':>16} {'frames/CPU-s':>14}")
    for name, value in rate.items():
        print(f"  {name:<22} {value:16.1f} {cpu_rate[name]:14.1f}")
    if "dataset_hf_processor" in rate:
        print(f"  ratio with the HF image processor instead: {rate['dataset_hf_processor'] / rate['raw_decord']:.2f} "
              f"(wall), {cpu_rate['dataset_hf_processor'] / cpu_rate['raw_decord']:.2f} (CPU)")  # fmt: skip
    if "dataset_float32" in rate:
        print(f"  ratio with float32 pixel values from the loader (an earlier path): "
              f"{rate['dataset_float32'] / rate['raw_decord']:.2f} (wall), "
              f"{cpu_rate['dataset_float32'] / cpu_rate['raw_decord']:.2f} (CPU)")  # fmt: skip
    if "raw_decord_pil_resize" in rate:
        print(f"  ratio of raw decord + PIL resize alone (floor of an exact loader): "
              f"{rate['raw_decord_pil_resize'] / rate['raw_decord']:.2f} (wall), "
              f"{cpu_rate['raw_decord_pil_resize'] / cpu_rate['raw_decord']:.2f} (CPU)")  # fmt: skip
    if "dataset_torch_resize" in rate:
        print(f"  ratio with torch's uint8 resize instead of PIL's: "
              f"{rate['dataset_torch_resize'] / rate['raw_decord']:.2f} (wall), "
              f"{cpu_rate['dataset_torch_resize'] / cpu_rate['raw_decord']:.2f} (CPU)")  # fmt: skip
    print(f"ratio dataset / raw decord: {ratio:.2f} (wall clock), {cpu_ratio:.2f} (CPU time); target >= 0.8")
    if args.json:
        figures = {"frames_per_s": rate, "frames_per_cpu_s": cpu_rate, "ratio": ratio, "cpu_ratio": cpu_ratio,
                   "args": vars(args)}  # fmt: skip
        Path(args.json).write_text(json.dumps(figures, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
