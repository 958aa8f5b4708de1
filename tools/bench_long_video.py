"""Long videos at bounded memory: peak memory and time of the streaming path for 16 ... 1024 frames.

    python tools/bench_long_video.py                               # CPU: 16, 128 and 1024 frames
    python tools/bench_long_video.py --device cuda --dtype bfloat16 --real-sizes --frames 16,256,1024

Each frame count runs in a fresh process, ``no_grad``, through ``videoccam.model.long_video.encode_long_video``:
frames arrive ``--chunk`` at a time (random uint8 frames generated chunk by chunk and normalised, as a decoder
would deliver them), each chunk goes through SigLIP, its features are projected to keys and values and folded
into the projector's online softmax, then dropped. Widths are the released ones (SigLIP-so400m/384: 729 patches
of width 1152, MLP 4304, 16 heads; the 7B projector: 1024 queries, hidden 1024, output 3584). SigLIP's depth is
``--vision-layers`` (default 1 on a CPU, where the 27 released layers take seconds per frame; ``--real-sizes``:
27): depth changes time, not the streaming memory, which holds one layer's activations of one chunk.

Prints, per frame count: seconds, seconds per frame, the peak memory above the weights (CPU: ``VmHWM`` after
resetting it through ``/proc/self/clear_refs``, with ``MALLOC_MMAP_THRESHOLD_`` fixed so that freed tensors leave
the resident set; CUDA: ``max_memory_allocated``), and both relative to the smallest frame count (targets: peak
<= 1.2x the 16-frame run at 1024 frames; time per frame flat, i.e. time linear in frames). ``--check`` also
compares the streamed output with the usual path (all features, then the projector) at the smallest count.
``--smoke``: tiny sizes, in this process (CI).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def build(args: argparse.Namespace):
    import torch
    from transformers import SiglipVisionConfig, SiglipVisionModel

    from videoccam.model.hf.ccam_projector import CCAMProjector, CCAMProjectorConfig

    torch.manual_seed(0)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    vision = SiglipVisionModel(SiglipVisionConfig(
        hidden_size=args.vision_hidden, intermediate_size=args.vision_intermediate, num_attention_heads=16,
        num_hidden_layers=args.vision_layers, image_size=args.image_size, patch_size=14,
    )).to(device=device, dtype=dtype).eval()  # fmt: skip
    projector = CCAMProjector(CCAMProjectorConfig(
        num_queries=args.num_queries, hidden_size=args.hidden, num_heads=16, cross_hidden_size=args.vision_hidden,
        intermediate_size=4 * args.hidden, output_size=args.output, dropout=0.0, attention_dropout=0.0,
    )).to(device=device, dtype=dtype).eval()  # fmt: skip
    return vision, projector


def pixel_chunks(args: argparse.Namespace, frames: int):
    """A video's frames as normalised chunks, generated (and dropped) one chunk at a time."""
    import torch

    def chunks():
        for start in range(0, frames, args.chunk):
            n = min(args.chunk, frames - start)
            g = torch.Generator().manual_seed(start)
            raw = torch.randint(0, 256, (n, 3, args.image_size, args.image_size), dtype=torch.uint8, generator=g)
            yield (raw.to(args.device).float() / 127.5 - 1.0).to(getattr(torch, args.dtype))  # SigLIP: mean = std 0.5

    return chunks


def run_case(args: argparse.Namespace) -> dict:
    import torch

    from videoccam.model.long_video import encode_long_video

    if args.threads:
        torch.set_num_threads(args.threads)
    vision, projector = build(args)
    select = -2 if args.vision_layers > 0 else -1
    device = torch.device(args.device)
    with torch.no_grad():  # warm-up: kernels, allocator pools, lazy imports
        encode_long_video(vision, projector, pixel_chunks(args, min(2, args.case_frames)), min(2, args.case_frames),
                          select)  # fmt: skip
    if device.type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    else:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        base = _status_kib("VmRSS") * 1024
    start, cpu = time.perf_counter(), time.process_time()
    out = encode_long_video(vision, projector, pixel_chunks(args, args.case_frames), args.case_frames, select)
    if device.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = _status_kib("VmHWM") * 1024 - base
    result = {"frames": args.case_frames, "seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu,
              "peak_bytes": peak, "resident_bytes": base}  # fmt: skip
    if args.check:
        from videoccam.model.hf.modeling_videoccam import encode_frames

        with torch.no_grad():
            frames = torch.cat(list(pixel_chunks(args, args.case_frames)()))
            reference = projector(encode_frames(vision, frames, select, args.chunk), [args.case_frames])
        result["max_abs_diff"] = float((out.float() - reference.float()).abs().max())
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--frames", default="16,128,1024", help="comma-separated frame counts (default: %(default)s)")
    parser.add_argument("--chunk", type=int, default=8, help="frames per streaming step (default: %(default)s)")
    parser.add_argument("--vision-layers", type=int, default=1, help="SigLIP layers (released: 27)")
    parser.add_argument("--real-sizes", action="store_true", help="27 SigLIP layers (the released tower)")
    parser.add_argument("--vision-hidden", type=int, default=1152)
    parser.add_argument("--vision-intermediate", type=int, default=4304)
    parser.add_argument("--image-size", type=int, default=384)
    parser.add_argument("--num-queries", type=int, default=1024)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--output", type=int, default=3584)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--check", action="store_true", help="compare with the usual path at the smallest count")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (plumbing check)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--case-frames", type=int, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.real_sizes:
        args.vision_layers = 27
    if args.smoke:
        args.frames, args.chunk, args.vision_hidden, args.vision_intermediate = "4,16", 4, 32, 64
        args.image_size, args.num_queries, args.hidden, args.output, args.check = 28, 16, 32, 40, True
    if args.case_frames:
        print(json.dumps(run_case(args)))
        return 0
    if args.device == "cpu" and not os.path.exists("/proc/self/clear_refs"):
        raise SystemExit("measuring CPU memory needs Linux (/proc/self/clear_refs)")
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0", MALLOC_ARENA_MAX="1")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    forwarded = [a for a in (sys.argv[1:] if argv is None else list(argv))]
    rows = []
    counts = [int(f) for f in args.frames.split(",")]
    for i, frames in enumerate(counts):
        if args.smoke:  # plumbing only: in this process (its peaks are not each case's own)
            args.case_frames, args.check = frames, i == 0
            rows.append(run_case(args))
            continue
        cmd = [sys.executable, __file__, *forwarded, "--case-frames", str(frames)]
        if i > 0 and "--check" in cmd:
            cmd.remove("--check")
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            return 1
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    first = rows[0]
    print(f"long video, streaming (chunks of {args.chunk} frames), SigLIP width {args.vision_hidden} x "
          f"{args.vision_layers} layers at {args.image_size} px, projector {args.num_queries} queries x {args.hidden}, "
          f"{args.device} {args.dtype}, no_grad")  # fmt: skip
    print(f"  {'frames':>6} {'seconds':>9} {'s/frame':>8} {'CPU-s/frame':>11} {'peak MiB':>9} {'peak / first':>12} "
          f"{'s/frame / first':>15}")  # fmt: skip
    for row in rows:
        print(f"  {row['frames']:>6} {row['seconds']:>9.2f} {row['seconds'] / row['frames']:>8.3f} "
              f"{row['cpu_seconds'] / row['frames']:>11.3f} {row['peak_bytes'] / 2**20:>9.0f} "
              f"{row['peak_bytes'] / max(first['peak_bytes'], 1):>12.2f} "
              f"{(row['seconds'] / row['frames']) / (first['seconds'] / first['frames']):>15.2f}")  # fmt: skip
    if first.get("max_abs_diff") is not None:
        print(f"  streamed vs usual path at {first['frames']} frames: max |diff| = {first['max_abs_diff']:.1e}")
    last = rows[-1]
    print(f"peak memory at {last['frames']} frames / {first['frames']} frames: "
          f"{last['peak_bytes'] / max(first['peak_bytes'], 1):.2f} (target <= 1.2); time per frame: "
          f"{(last['seconds'] / last['frames']) / (first['seconds'] / first['frames']):.2f}x the first's (wall), "
          f"{(last['cpu_seconds'] / last['frames']) / (first['cpu_seconds'] / first['frames']):.2f}x (CPU)")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "args": vars(args)}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
