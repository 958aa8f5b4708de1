"""Benchmark the CCAM cross-attention: dense masked SDPA vs the block-sparse path, side by side in one run.

    python tools/bench_projector.py                                  # CPU, fp32, 16 and 96 frames, forward + train
    python tools/bench_projector.py --device cuda --dtype bfloat16 --frames 16,96,256 --repeats 10

For each frame count it times, interleaved (dense, blocks, blocks, dense, ...) so machine load hits both alike:

* ``attention``: the masked attention itself, what the two paths compute differently: dense masked SDPA (the
  CCAM mask built, then one ``scaled_dot_product_attention``) vs the block-sparse one (the block plan, then one
  SDPA per query block over its visible prefix of keys), on random q, k, v at the released 7B sizes: 1024
  queries, 16 heads of 64, 729 patches per frame;
* ``layer``: one whole CCAM cross-attention layer (adds the q/k/v/o projections, the same for both paths:
  the K/V projections of all keys cost about as much as dense attention, so they dilute the ratio);
* ``projector``: the whole projector (query self-attention, cross-attention, MLP, output projection to 3584);

in ``forward`` (``no_grad``) and ``train`` (forward + backward of a squared-sum loss) modes, and prints the
median wall time (and CPU time on a CPU: all threads, steadier than wall time on a shared machine), the
speed-up dense / blocks, and the largest difference of the outputs and (train) of every gradient, relative to
that tensor's largest magnitude (gradients that are zero in exact arithmetic, the key biases', left out;
computed in float32 whatever ``--dtype``). On CUDA it
also prints the peak memory above the inputs and weights (``torch.cuda.max_memory_allocated``).

Imports only torch, transformers and ``videoccam/model/hf/ccam_projector.py`` (runs where the rest of the
package's dependencies are not installed: ``PYTHONPATH=. python tools/bench_projector.py ...``).
``--smoke`` runs tiny sizes in seconds (CI checks the plumbing with it).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

IMPLS = ("dense", "blocks")


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def build_case(args, frames: int, what: str):
    """(module, inputs, run(impl) -> output) for one frame count."""
    import torch

    import torch.nn.functional as F

    from videoccam.model.hf.ccam_projector import (
        CCAMAttention,
        CCAMProjector,
        CCAMProjectorConfig,
        _batched_query_frame_index,
        _cross_mask_from_index,
        _query_block_plan,
        block_sparse_attention,
    )

    torch.manual_seed(0)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    config = CCAMProjectorConfig(
        num_queries=args.num_queries, hidden_size=args.hidden, num_heads=args.heads, cross_hidden_size=args.cross,
        intermediate_size=4 * args.hidden, output_size=args.output, dropout=0.0, attention_dropout=0.0,
        query_blocks=args.query_blocks,
    )  # fmt: skip
    features = torch.randn(frames, args.patches, args.cross, device=device, dtype=dtype)
    if what == "projector":
        module = CCAMProjector(config).to(device=device, dtype=dtype)

        def run(impl, x):
            return module(x, [frames], cross_attention=impl)

        return module, features, run
    frames_t = torch.tensor([frames])
    if what == "attention":
        head_dim = args.hidden // args.heads
        module = torch.nn.Module()  # holds q, so that train mode compares its gradient too
        module.q = torch.nn.Parameter(torch.randn(1, args.heads, args.num_queries, head_dim, device=device,
                                                  dtype=dtype))  # fmt: skip
        q = module.q
        kv = torch.randn(2, args.heads, frames * args.patches, head_dim, device=device, dtype=dtype)

        def run(impl, x):
            k, v = x[:1], x[1:]
            tau = _batched_query_frame_index(args.num_queries, frames_t, "floor")  # [1, q] (CPU)
            if impl == "dense":
                mask = _cross_mask_from_index(tau.to(device), frames_t.to(device), args.patches, frames)[:, None]
                return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            plan = _query_block_plan(tau, args.query_blocks)
            return block_sparse_attention(q, k, v, tau.to(device), args.patches, plan)

        return module, kv, run
    module = CCAMAttention(args.hidden, args.cross, args.heads, 0.0).to(device=device, dtype=dtype)
    queries = torch.randn(1, args.num_queries, args.hidden, device=device, dtype=dtype)

    def run(impl, x):
        kv = x.reshape(1, frames * args.patches, args.cross)
        tau = _batched_query_frame_index(args.num_queries, frames_t, "floor")  # [1, q] (CPU)
        if impl == "dense":
            mask = _cross_mask_from_index(tau.to(device), frames_t.to(device), args.patches, frames)[:, None]
            return module(queries, kv, mask)
        plan = _query_block_plan(tau, args.query_blocks)
        return module.forward_blocks(queries, kv, tau.to(device), args.patches, plan)

    return module, features, run


def measure(args, frames: int, what: str, mode: str) -> dict:
    """Median times of both paths and their largest output / gradient difference."""
    import torch

    device = torch.device(args.device)
    module, features, run = build_case(args, frames, what)
    train = mode == "train"

    def once(impl):
        module.zero_grad(set_to_none=True)
        x = features.clone().requires_grad_(train)
        _sync(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated() if device.type == "cuda" else 0
        cpu, start = time.process_time(), time.perf_counter()
        with torch.set_grad_enabled(train):
            out = run(impl, x)
            if train:
                out.float().square().sum().backward()
        _sync(device)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        peak = torch.cuda.max_memory_allocated() - base if device.type == "cuda" else None
        tensors = [out.detach().float()]
        if train:
            tensors += [x.grad.float()] + [p.grad.float() for p in module.parameters() if p.grad is not None]
        return wall, cpu, peak, tensors

    results = {impl: {"wall": [], "cpu": [], "peak": []} for impl in IMPLS}
    outputs = {}
    for impl in IMPLS:  # warm-up (kernels, allocator), and the outputs compared below
        outputs[impl] = once(impl)[3]
    if args.dtype != "float32":  # compare in float32: low-precision rounding would hide what the paths do
        exact = argparse.Namespace(**{**vars(args), "dtype": "float32"})
        module32, features32, run32 = build_case(exact, frames, what)
        for impl in IMPLS:
            module32.zero_grad(set_to_none=True)
            x = features32.clone().requires_grad_(train)
            with torch.set_grad_enabled(train):
                out = run32(impl, x)
                if train:
                    out.square().sum().backward()
            outputs[impl] = [out.detach()] + ([x.grad] + [p.grad for p in module32.parameters() if p.grad is not None]
                                              if train else [])  # fmt: skip
        del module32, features32
    for r in range(args.repeats):
        for impl in IMPLS if r % 2 == 0 else IMPLS[::-1]:
            wall, cpu, peak, _ = once(impl)
            results[impl]["wall"].append(wall)
            results[impl]["cpu"].append(cpu)
            results[impl]["peak"].append(peak)
    # largest difference of any output or gradient, relative to that tensor's largest magnitude; tensors that
    # are zero in exact arithmetic (the key biases' gradients: softmax ignores a per-query constant) hold only
    # rounding noise (below 1e-6 of the largest magnitude of all) and are left out
    floor = 1e-6 * max(float(b.abs().max()) for b in outputs["dense"])
    diffs = [float((a - b).abs().max()) / float(b.abs().max())
             for a, b in zip(outputs["blocks"], outputs["dense"]) if float(b.abs().max()) > floor]  # fmt: skip
    row = {"frames": frames, "what": what, "mode": mode, "max_rel_diff": max(diffs)}
    for impl in IMPLS:
        row[f"{impl}_s"] = statistics.median(results[impl]["wall"])
        row[f"{impl}_cpu_s"] = statistics.median(results[impl]["cpu"])
        row[f"{impl}_peak_mib"] = None if device.type != "cuda" else max(results[impl]["peak"]) / 2**20
    row["speedup"] = row["dense_s"] / row["blocks_s"]
    row["speedup_cpu"] = row["dense_cpu_s"] / max(row["blocks_cpu_s"], 1e-9)
    return row


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--frames", default="16,96", help="comma-separated frame counts (default: %(default)s)")
    parser.add_argument("--what", default="attention,layer",
                        help="comma-separated: attention, layer, projector (default: %(default)s)")
    parser.add_argument("--mode", choices=("forward", "train", "both"), default="both")
    parser.add_argument("--query-blocks", type=int, default=4, help="query blocks of the block-sparse path")
    parser.add_argument("--num-queries", type=int, default=1024)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--heads", type=int, default=16)
    parser.add_argument("--cross", type=int, default=1152, help="vision width (SigLIP-so400m: 1152)")
    parser.add_argument("--output", type=int, default=3584, help="LLM width (Qwen2.5-7B: 3584)")
    parser.add_argument("--patches", type=int, default=729)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one repeat (plumbing check)")
    parser.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    if args.smoke:
        args.frames, args.num_queries, args.hidden, args.heads = "2,4", 16, 32, 2
        args.cross, args.output, args.patches, args.repeats = 24, 40, 4, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    whats = args.what.split(",")
    if not set(whats) <= {"attention", "layer", "projector"}:
        raise SystemExit(f"--what takes attention, layer and projector, got {args.what!r}")
    modes = ("forward", "train") if args.mode == "both" else (args.mode,)
    rows = []
    print(f"CCAM cross-attention, dense masked SDPA vs block-sparse ({args.query_blocks} query blocks): "
          f"{args.num_queries} queries, hidden {args.hidden}, {args.heads} heads, {args.patches} patches/frame, "
          f"{args.device} {args.dtype}, {torch.get_num_threads()} threads, median of {args.repeats}, interleaved")
    header = (f"{'frames':>6} {'what':>9} {'mode':>7} | {'dense s':>8} {'blocks s':>8} {'speed-up':>8} | "
              f"{'dense CPU-s':>11} {'blocks CPU-s':>12} {'speed-up':>8} | {'rel. diff':>10}")  # fmt: skip
    if args.device.startswith("cuda"):
        header += f" | {'dense MiB':>9} {'blocks MiB':>10}"
    print(header)
    for frames in [int(f) for f in args.frames.split(",")]:
        for what in whats:
            for mode in modes:
                row = measure(args, frames, what, mode)
                rows.append(row)
                line = (f"{frames:>6} {what:>9} {mode:>7} | {row['dense_s']:>8.3f} {row['blocks_s']:>8.3f} "
                        f"{row['speedup']:>7.2f}x | {row['dense_cpu_s']:>11.2f} {row['blocks_cpu_s']:>12.2f} "
                        f"{row['speedup_cpu']:>7.2f}x | {row['max_rel_diff']:>10.1e}")  # fmt: skip
                if args.device.startswith("cuda"):
                    line += f" | {row['dense_peak_mib']:>9.0f} {row['blocks_peak_mib']:>10.0f}"
                print(line, flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "args": vars(args)}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
