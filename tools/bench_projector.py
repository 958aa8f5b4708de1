"""Benchmark the CCAM projector: dense masked attention vs the chunked online-softmax path.

Each (frames, path) case runs in a fresh subprocess so its peak memory (max RSS, or CUDA max allocated on a
GPU) is its own; both paths run on the same random features and the script prints time, peak memory, the
chunked/dense ratios and the largest output difference, side by side in one run. Released 7B projector sizes
by default (1024 queries, hidden 1024, 16 heads, SigLIP width 1152, 729 patches per frame), inference
(``no_grad``), fp32 on CPU.

    python tools/bench_projector.py --frames 16,64 --chunk 8
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def _case(args: argparse.Namespace) -> dict:
    import torch

    from videoccam.model.hf.ccam_projector import CCAMProjector, CCAMProjectorConfig

    torch.manual_seed(0)
    device = torch.device(args.device)
    config = CCAMProjectorConfig(
        num_queries=args.num_queries, hidden_size=args.hidden, num_heads=args.heads, cross_hidden_size=1152,
        intermediate_size=4 * args.hidden, output_size=args.output, dropout=0.0, attention_dropout=0.0,
    )
    model = CCAMProjector(config).to(device).eval()
    features = torch.randn(args.case_frames, args.patches, 1152, device=device)
    chunk = args.chunk if args.case_path == "chunked" else None
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    with torch.no_grad():
        for _ in range(args.repeats + 1):  # first run warms up
            start = time.perf_counter()
            out = model(features, [args.case_frames], frame_chunk_size=chunk)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    torch.save(out.cpu(), args.case_out)
    return {"seconds": sorted(times[1:])[len(times[1:]) // 2], "peak_mib": peak}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", default="16,64", help="comma-separated frame counts (default: %(default)s)")
    parser.add_argument("--chunk", type=int, default=8, help="frames per chunk of the chunked path")
    parser.add_argument("--num-queries", type=int, default=1024)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--heads", type=int, default=16)
    parser.add_argument("--output", type=int, default=3584, help="LLM width (Qwen2.5-7B: 3584)")
    parser.add_argument("--patches", type=int, default=729)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--case-frames", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--case-path", help=argparse.SUPPRESS)
    parser.add_argument("--case-out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.case_path:
        print(json.dumps(_case(args)))
        return 0

    import torch

    rows = []
    for frames in [int(f) for f in args.frames.split(",")]:
        result = {}
        for path in ("dense", "chunked"):
            out = f"/tmp/bench_projector_{os.getpid()}_{frames}_{path}.pt"
            cmd = [sys.executable, __file__, "--case-frames", str(frames), "--case-path", path, "--case-out", out,
                   *(argv if argv is not None else sys.argv[1:])]
            run = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if run.returncode != 0:
                print(run.stderr[-2000:], file=sys.stderr)
                return 1
            result[path] = json.loads(run.stdout.strip().splitlines()[-1])
            result[path]["out"] = torch.load(out)
            os.remove(out)
        diff = (result["dense"]["out"] - result["chunked"]["out"]).abs().max().item()
        rows.append((frames, result["dense"], result["chunked"], diff))

    print(f"CCAM projector, {args.num_queries} queries, hidden {args.hidden}, {args.patches} patches/frame, "
          f"chunk {args.chunk} frames, {args.device}, no_grad, median of {args.repeats}")
    print(f"{'frames':>6} | {'dense s':>8} {'dense MiB':>10} | {'chunked s':>9} {'chunked MiB':>11} | "
          f"{'time ratio':>10} {'mem ratio':>9} | {'max |diff|':>10}")
    for frames, dense, chunked, diff in rows:
        print(f"{frames:>6} | {dense['seconds']:>8.2f} {dense['peak_mib']:>10.0f} | {chunked['seconds']:>9.2f} "
              f"{chunked['peak_mib']:>11.0f} | {chunked['seconds'] / dense['seconds']:>10.2f} "
              f"{chunked['peak_mib'] / max(dense['peak_mib'], 1):>9.2f} | {diff:>10.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
