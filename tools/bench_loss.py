"""Peak memory and time of the loss step: plain answer-token cross-entropy vs the chunked LM head, side by side.

    python tools/bench_loss.py                                   # CPU: vocab 152,064, 4,096 answer tokens
    python tools/bench_loss.py --device cuda --dtype bfloat16 --hidden 3584 --tokens 16384

The loss step is what ``VideoCCAMModel._answer_loss`` does after the decoder: the LM head over the answer
tokens' hidden states, cross-entropy in fp32, and backward to the hidden states (and to the head's weight with
``--train-head``; the recipes freeze it). Both variants run on the same random head and hidden states:

* ``plain``: ``cross_entropy(head(hidden).float(), targets, reduction="sum")``, all tokens' logits at once;
* ``chunked``: ``videoccam.model.chunked_loss.chunked_head_cross_entropy`` with ``--chunk`` tokens per head call.

Each variant runs in a fresh process (so each peak is its own): on a CPU the peak resident memory of the step
(``VmHWM`` after resetting it through ``/proc/self/clear_refs``, Linux; ``MALLOC_MMAP_THRESHOLD_`` fixed so that
freed tensors leave the resident set) minus the resident memory before it; on CUDA
``torch.cuda.max_memory_allocated`` minus the memory allocated before. Prints both peaks, their ratio (target:
plain / chunked >= 4 at 4,096 tokens and a 152,064-word vocabulary), the times and the largest difference of the
loss and of the gradients. The default ``--hidden 256`` keeps the CPU run short: the logits, not the head's
width, are what the chunking changes. ``--smoke``: tiny sizes, in this process (CI).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
VARIANTS = ("plain", "chunked")


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def run_variant(args: argparse.Namespace) -> dict:
    """One loss step of ``args.variant`` in this process; returns its peak memory and time."""
    import torch
    import torch.nn.functional as F

    from videoccam.model.chunked_loss import chunked_head_cross_entropy

    if args.threads:
        torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    torch.manual_seed(0)
    head = torch.nn.Linear(args.hidden, args.vocab, bias=False).to(device=device, dtype=dtype)
    head.requires_grad_(args.train_head)
    hidden = (torch.randn(args.tokens, args.hidden, device=device, dtype=dtype) * 2).requires_grad_(True)
    targets = torch.randint(0, args.vocab, (args.tokens,), device=device)

    def step(hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if args.variant == "plain":
            loss = F.cross_entropy(head(hidden).float(), targets, reduction="sum")
        else:
            loss = chunked_head_cross_entropy(head, hidden, targets, args.chunk)
        loss.backward()
        return loss.detach()

    if args.warmup:  # imports (checkpointing), kernels and allocator pools on a small problem, outside the peak
        step(hidden.detach()[:8].clone().requires_grad_(True), targets[:8])
        head.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    else:
        with open("/proc/self/clear_refs", "w") as f:  # reset VmHWM to the current resident set
            f.write("5")
        base = _status_kib("VmRSS") * 1024
    start = time.perf_counter()
    loss = step(hidden, targets)
    if device.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = _status_kib("VmHWM") * 1024 - base
    seconds = time.perf_counter() - start
    grads = {"hidden": hidden.grad.float().cpu()}
    if args.train_head:
        grads["head"] = head.weight.grad.float().cpu()
    torch.save({"loss": loss.float().cpu(), **grads}, args.out)
    return {"peak_bytes": peak, "seconds": seconds, "loss": float(loss)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--vocab", type=int, default=152064, help="vocabulary (Qwen2.5: 152,064)")
    parser.add_argument("--tokens", type=int, default=4096, help="answer tokens in the micro-batch")
    parser.add_argument("--hidden", type=int, default=256, help="LLM width (Qwen2.5-7B: 3584)")
    parser.add_argument("--chunk", type=int, default=512, help="tokens per head call (VideoCCAMModel.loss_chunk_size)")
    parser.add_argument("--train-head", action="store_true", help="the head's weight trains too")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--repeats", type=int, default=1, help="runs per variant (alternating; medians)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (plumbing check)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--warmup", action="store_true", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.smoke:
        args.vocab, args.tokens, args.hidden, args.chunk = 512, 64, 16, 16
    if args.variant:
        print(json.dumps(run_variant(args)))
        return 0
    if args.device == "cpu" and not os.path.exists("/proc/self/clear_refs"):
        parser.error("measuring CPU memory needs Linux (/proc/self/clear_refs)")
    import statistics

    import torch

    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0", MALLOC_ARENA_MAX="1")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    passthrough = ["--vocab", str(args.vocab), "--tokens", str(args.tokens), "--hidden", str(args.hidden),
                   "--chunk", str(args.chunk), "--device", args.device, "--dtype", args.dtype,
                   "--threads", str(args.threads), "--warmup"] + (["--train-head"] if args.train_head else [])  # fmt: skip
    runs: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    tensors = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for variant in VARIANTS if r % 2 == 0 else VARIANTS[::-1]:
                out = os.path.join(tmp, f"{variant}.pt")
                if args.smoke:  # plumbing only: in this process (its peaks are not each variant's own)
                    runs[variant].append(run_variant(argparse.Namespace(**{**vars(args), "variant": variant,
                                                                            "out": out, "warmup": True})))
                else:
                    cmd = [sys.executable, __file__, "--variant", variant, "--out", out, *passthrough]
                    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
                    if proc.returncode != 0:
                        print(proc.stderr[-3000:], file=sys.stderr)
                        return 1
                    runs[variant].append(json.loads(proc.stdout.strip().splitlines()[-1]))
                tensors[variant] = torch.load(out, weights_only=True)
    figures = {v: {"peak_mib": statistics.median(r["peak_bytes"] for r in runs[v]) / 2**20,
                   "seconds": statistics.median(r["seconds"] for r in runs[v])} for v in VARIANTS}  # fmt: skip
    diffs = {k: float((tensors["chunked"][k] - tensors["plain"][k]).abs().max()) for k in tensors["plain"]}
    relative = float(abs(tensors["chunked"]["loss"] - tensors["plain"]["loss"]) / tensors["plain"]["loss"].abs())
    ratio = figures["plain"]["peak_mib"] / max(figures["chunked"]["peak_mib"], 1e-9)
    logits_mib = args.tokens * args.vocab * 4 / 2**20
    print(f"loss step: {args.tokens} answer tokens x vocab {args.vocab} (fp32 logits {logits_mib:.0f} MiB), hidden "
          f"{args.hidden}, head {'trains' if args.train_head else 'frozen'}, {args.device} {args.dtype}, chunk "
          f"{args.chunk}, median of {args.repeats}")  # fmt: skip
    print(f"  {'':<8} {'peak MiB':>10} {'seconds':>9}")
    for variant in VARIANTS:
        print(f"  {variant:<8} {figures[variant]['peak_mib']:>10.0f} {figures[variant]['seconds']:>9.2f}")
    print("  max |chunked - plain|: " + ", ".join(f"{k} {v:.1e}" for k, v in diffs.items())
          + f" (loss relative {relative:.1e})")
    print(f"peak memory plain / chunked: {ratio:.2f} (target >= 4); time chunked / plain: "
          f"{figures['chunked']['seconds'] / figures['plain']['seconds']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"figures": figures, "ratio": ratio, "diffs": diffs,
                                               "loss_relative_diff": relative, "args": vars(args)}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
