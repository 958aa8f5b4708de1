"""Where a training step's time goes: data wait, vision, projector, LLM forward + backward, optimizer; MFU.

    python tools/bench_train_step.py                              # CPU, scaled-down stage 2 (seconds)
    python tools/bench_train_step.py --real-sizes --device cuda   # released sizes, random weights, bf16 (GPU)

Builds a Video-CCAM stage-2 step from its parts with random weights: SigLIP (``SiglipVisionModel``), the CCAM
projector and a Qwen2 LLM (``--real-sizes``: SigLIP-so400m/384, the released 7B projector, Qwen2.5-7B), LoRA on
the LLM (every linear layer but the head) and on SigLIP's layers that reach the projector (peft), trainable
weights in fp32, bf16 towers under autocast on a GPU, activation checkpointing, the chunked answer-token loss,
AdamW with gradient clipping: what ``VideoCCAMModel`` runs in stage 2 (``--stage 1``: projector only). It uses
the same functions as the model (``encode_frames``, the projector, ``splice_media_embeds``,
``chunked_head_cross_entropy``) but no mmengine or xtuner, so it runs on a machine with torch, transformers and
peft only (``PYTHONPATH=. python tools/bench_train_step.py ...``).

Batches are synthetic (random uint8 frames and tokens) from a DataLoader with ``--num-workers`` workers, so
"data" is the wait for a batch plus its copy to the device, not decoding (``tools/bench_dataloader.py`` measures
that). Per step it times, with device synchronisation at each boundary: data, vision forward (normalisation +
SigLIP), projector forward, LLM forward (splice + decoder + loss), backward through the LLM, the projector and
the vision tower (split where the gradient reaches the projector's output and the vision features), and the
optimizer (clip + AdamW + zero_grad); then tokens/s (LLM tokens: text + visual), frames/s, and the model FLOP
utilisation: FLOPs of one step counted by ``torch.utils.flop_counter.FlopCounterMode`` (SigLIP, projector and LLM,
forward and backward) on a step without activation checkpointing or loss chunking (model FLOPs: recomputation
is not counted), divided by step time and by the peak: ``--peak-tflops``, else the device's dense bf16 peak from a
table (H100/H200: 989), else a measured matmul rate. ``--smoke``: tiny sizes (CI).
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

PHASES = ("data", "vision_fwd", "projector_fwd", "llm_fwd", "llm_bwd", "projector_bwd", "vision_bwd", "optimizer")
# Dense bf16 tensor-core peaks (TFLOP/s) by device name; the SXM figures of the vendor's data sheets.
PEAK_TFLOPS = {"H200": 989.4, "H100": 989.4, "A100": 312.0, "L40S": 362.1, "A10G": 125.0, "L4": 121.0}

REAL = dict(
    vision=dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16,
                image_size=384, patch_size=14),
    projector=dict(num_queries=1024, hidden_size=1024, num_heads=16, intermediate_size=4096, dropout=0.1,
                   attention_dropout=0.1),
    llm=dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
             num_key_value_heads=4, vocab_size=152064, max_position_embeddings=32768, rope_theta=1e6),
    llm_lora=(512, 256), vision_lora=(64, 16), frames=16, text_tokens=512, answer_tokens=128, batch_size=2,
)  # fmt: skip
SMALL = dict(
    vision=dict(hidden_size=128, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4, image_size=112,
                patch_size=14),
    projector=dict(num_queries=64, hidden_size=128, num_heads=4, intermediate_size=512, dropout=0.0,
                   attention_dropout=0.0),
    llm=dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=4,
             num_key_value_heads=2, vocab_size=8192, max_position_embeddings=4096),
    llm_lora=(32, 64), vision_lora=(8, 16), frames=16, text_tokens=320, answer_tokens=160, batch_size=2,
)  # fmt: skip
SMOKE = dict(
    vision=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=28,
                patch_size=14),
    projector=dict(num_queries=8, hidden_size=32, num_heads=2, intermediate_size=64, dropout=0.0,
                   attention_dropout=0.0),
    llm=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
             vocab_size=128, max_position_embeddings=512),
    llm_lora=(4, 8), vision_lora=(4, 8), frames=4, text_tokens=24, answer_tokens=8, batch_size=2,
)  # fmt: skip


class SyntheticBatches:
    """Map-style dataset of collated batches: uint8 frames, token ids with one media placeholder, labels."""

    def __init__(self, sizes: dict, args: argparse.Namespace, steps: int) -> None:
        self.sizes, self.args, self.steps = sizes, args, steps

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, i: int) -> dict:
        import torch

        from videoccam.model.hf.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX

        g = torch.Generator().manual_seed(i)
        a, b = self.args, self.args.batch_size
        size = self.sizes["vision"]["image_size"]
        ids = torch.randint(10, self.sizes["llm"]["vocab_size"], (b, a.text_tokens), generator=g)
        ids[:, 1] = IMAGE_TOKEN_INDEX
        labels = torch.full_like(ids, IGNORE_INDEX)
        labels[:, -a.answer_tokens :] = ids[:, -a.answer_tokens :]
        return {
            "input_ids": ids, "labels": labels, "attention_mask": torch.ones_like(ids),
            "pixel_values": torch.randint(0, 256, (b * a.frames, 3, size, size), dtype=torch.uint8, generator=g),
            "num_frames": [a.frames] * b,
        }  # fmt: skip


def build(sizes: dict, args: argparse.Namespace):
    """(vision, projector, llm) with LoRA and freezing as in the stage, trainable weights in fp32."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config, SiglipVisionConfig, SiglipVisionModel

    from videoccam.model.hf.ccam_projector import CCAMProjector, CCAMProjectorConfig

    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    torch.manual_seed(0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # build (and initialise) the towers directly in their dtype on the device
    try:
        with torch.device(device):
            vision = SiglipVisionModel(SiglipVisionConfig(**sizes["vision"], attn_implementation="sdpa"))
            llm = AutoModelForCausalLM.from_config(Qwen2Config(**sizes["llm"], tie_word_embeddings=False,
                                                               attn_implementation="sdpa"))  # fmt: skip
    finally:
        torch.set_default_dtype(default)
    projector = CCAMProjector(CCAMProjectorConfig(
        cross_hidden_size=sizes["vision"]["hidden_size"], output_size=sizes["llm"]["hidden_size"],
        **sizes["projector"],
    )).to(device=device, dtype=torch.float32)  # fmt: skip
    llm.config.use_cache = False
    vision.requires_grad_(False)
    llm.requires_grad_(False)
    if args.stage == 2:
        try:
            from peft import LoraConfig, get_peft_model
        except ImportError as e:
            raise ImportError("stage 2 needs peft for the LoRA adapters; pip install peft (or --stage 1)") from e
        names = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
        r, alpha = sizes["llm_lora"]
        llm = get_peft_model(llm, LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.05, target_modules=names))
        used = sizes["vision"]["num_hidden_layers"] - 1  # layers reaching hidden_states[-2]
        r, alpha = sizes["vision_lora"]
        vision = get_peft_model(vision, LoraConfig(
            r=r, lora_alpha=alpha, lora_dropout=0.05, target_modules=["q_proj", "k_proj", "v_proj", "out_proj", "fc1",
                                                                      "fc2"],
            layers_to_transform=list(range(used)), layers_pattern="layers",
        ))  # fmt: skip
        for module in (llm, vision):
            for p in module.parameters():
                if p.requires_grad:
                    p.data = p.data.float()
    if not args.no_checkpointing:
        kwargs = {"gradient_checkpointing_kwargs": {"use_reentrant": False}}
        for module in (vision, llm, projector):
            module.gradient_checkpointing_enable(**kwargs)
    return vision, projector, llm


def _named(name: str, module):
    """``module`` behind a wrapper whose class is called ``name`` (FlopCounterMode names root modules by class)."""
    import torch

    def forward(self, *args, **kwargs):
        return self.inner(*args, **kwargs)

    wrapper = type(name, (torch.nn.Module,), {"forward": forward})()
    wrapper.inner = module
    return wrapper


def step(parts, batch, args, optimizer, timer, loss_chunk: int | None, grad_hooks: bool = True,
         named: bool = False) -> float:  # fmt: skip
    """One training step, timed phase by phase into ``timer``; returns the loss. ``named``: SigLIP, the decoder
    and the head run behind wrappers named ``SigLIP``, ``LLMDecoder`` and ``LMHead`` (FLOP counting)."""
    import torch

    from videoccam.model.chunked_loss import chunked_head_cross_entropy
    from videoccam.model.hf.constants import IGNORE_INDEX
    from videoccam.model.hf.modeling_videoccam import encode_frames, splice_media_embeds

    vision, projector, llm = parts
    device = torch.device(args.device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.dtype == "bfloat16" and device.type == "cuda")
    base = llm.get_base_model() if hasattr(llm, "get_base_model") else llm
    decoder, head = base.get_decoder(), base.get_output_embeddings()
    vision_dtype = next(vision.parameters()).dtype
    if named:
        vision, decoder, head = _named("SigLIP", vision), _named("LLMDecoder", decoder), _named("LMHead", head)
    with autocast:
        timer.mark("data")
        frames = batch["pixel_values"].to(device, non_blocking=True).float().mul_(1 / 127.5).sub_(1.0)
        features = encode_frames(vision, frames.to(vision_dtype), -2, args.vision_chunk_size)
        timer.mark("vision_fwd")
        media = projector(features, batch["num_frames"])
        timer.mark("projector_fwd")
        if grad_hooks and features.requires_grad:
            features.register_hook(lambda g: timer.mark("projector_bwd") or g)
        if grad_hooks:
            media.register_hook(lambda g: timer.mark("llm_bwd") or g)
        spliced = splice_media_embeds(base.get_input_embeddings(), batch["input_ids"].to(device), media,
                                      attention_mask=batch["attention_mask"].to(device),
                                      labels=batch["labels"].to(device))  # fmt: skip
        hidden = decoder(inputs_embeds=spliced["inputs_embeds"], attention_mask=spliced["attention_mask"],
                         position_ids=spliced["position_ids"], use_cache=False).last_hidden_state
        targets = spliced["labels"][:, 1:]
        keep = targets != IGNORE_INDEX
        if loss_chunk:
            loss = chunked_head_cross_entropy(head, hidden[:, :-1][keep], targets[keep], loss_chunk)
        else:
            loss = torch.nn.functional.cross_entropy(head(hidden[:, :-1][keep]).float(), targets[keep], reduction="sum")
        loss = loss / keep.sum()
    timer.mark("llm_fwd")
    loss.backward()
    timer.mark("vision_bwd" if features.requires_grad else "projector_bwd")
    if optimizer is not None:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        timer.mark("optimizer")
    return float(loss.detach())


class Timer:
    """Timestamps at phase ends (device-synchronised); ``mark(name)`` closes the phase ``name``."""

    def __init__(self, device) -> None:
        self.device = device
        self.times: dict[str, float] = {}
        self.last = 0.0

    def start(self) -> None:
        self._sync()
        self.times, self.last = {}, time.perf_counter()

    def _sync(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def mark(self, name: str) -> None:
        self._sync()
        now = time.perf_counter()
        self.times[name] = self.times.get(name, 0.0) + now - self.last
        self.last = now


def count_flops(parts, batch, args) -> dict[str, float]:
    """FLOPs of one step (forward + backward) per part, without checkpointing or loss chunking."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    vision, projector, llm = parts
    for module in parts:
        if not args.no_checkpointing:
            module.gradient_checkpointing_disable()
    counter = FlopCounterMode(display=False)
    with counter:
        step(parts, batch, args, None, Timer(torch.device(args.device)), loss_chunk=None, grad_hooks=False, named=True)
    for module in parts:
        module.zero_grad(set_to_none=True)
        if not args.no_checkpointing:
            module.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    flops = {name: float(sum(ops.values())) for name, ops in counter.get_flop_counts().items()}
    total = float(counter.get_total_flops())
    parts_flops = {"vision": flops.get("SigLIP", 0.0), "projector": flops.get(type(projector).__name__, 0.0)}
    parts_flops["llm"] = total - parts_flops["vision"] - parts_flops["projector"]  # decoder, head, embedding, loss
    parts_flops["total"] = total
    return parts_flops


def peak_tflops(args) -> tuple[float, str]:
    import torch

    if args.peak_tflops:
        return args.peak_tflops, "--peak-tflops"
    if args.device.startswith("cuda"):
        name = torch.cuda.get_device_name()
        for key, value in PEAK_TFLOPS.items():
            if key in name:
                return value, f"{name} dense bf16 data sheet"
    n = 2048 if args.device == "cpu" else 8192
    dtype = getattr(torch, args.dtype)
    a = torch.randn(n, n, device=args.device, dtype=dtype)
    (a @ a).sum().item()
    start = time.perf_counter()
    for _ in range(3):
        c = a @ a
    c.sum().item()
    return 3 * 2 * n**3 / (time.perf_counter() - start) / 1e12, f"measured {n}^3 {args.dtype} matmul"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--real-sizes", action="store_true",
                        help="SigLIP-so400m/384, the 7B projector, Qwen2.5-7B (random weights; a GPU)")
    parser.add_argument("--stage", type=int, choices=(1, 2), default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None, choices=("float32", "bfloat16"),
                        help="towers' dtype (default: bfloat16 on cuda, float32 on cpu)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--frames", type=int, default=None, help="frames per video")
    parser.add_argument("--text-tokens", type=int, default=None, help="text tokens per sample")
    parser.add_argument("--answer-tokens", type=int, default=None, help="labelled tokens per sample")
    parser.add_argument("--vision-chunk-size", type=int, default=32)
    parser.add_argument("--loss-chunk-size", type=int, default=512)
    parser.add_argument("--no-checkpointing", action="store_true")
    parser.add_argument("--steps", type=int, default=3, help="measured steps (after --warmup)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the device's peak, for the MFU")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (plumbing check)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    sizes = REAL if args.real_sizes else SMOKE if args.smoke else SMALL
    args.dtype = args.dtype or ("bfloat16" if args.device.startswith("cuda") else "float32")
    for key in ("frames", "text_tokens", "answer_tokens", "batch_size"):
        if getattr(args, key) is None:
            setattr(args, key, sizes[key])
    if args.smoke:
        args.steps, args.warmup, args.num_workers = 1, 1, 0
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    parts = build(sizes, args)
    trainable = [p for module in parts for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=2e-4, fused=device.type == "cuda")
    loader = torch.utils.data.DataLoader(SyntheticBatches(sizes, args, args.warmup + args.steps + 1), batch_size=None,
                                         num_workers=args.num_workers, pin_memory=device.type == "cuda")  # fmt: skip
    batches = iter(loader)
    flops = count_flops(parts, next(batches), args)
    timer, rows, losses = Timer(device), [], []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for i in range(args.warmup + args.steps):
        timer.start()
        batch = next(batches)
        losses.append(step(parts, batch, args, optimizer, timer, args.loss_chunk_size))
        if i >= args.warmup:
            rows.append(dict(timer.times))
    phase = {name: statistics.median(r.get(name, 0.0) for r in rows) for name in PHASES}
    total = statistics.median(sum(r.values()) for r in rows)
    tokens = args.batch_size * (args.text_tokens - 1 + sizes["projector"]["num_queries"])
    frames = args.batch_size * args.frames
    peak, source = peak_tflops(args)
    mfu = flops["total"] / total / (peak * 1e12)
    memory = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
    n_train = sum(p.numel() for p in trainable)
    print(f"stage {args.stage} step, {'released sizes' if args.real_sizes else 'scaled down'} (random weights), "
          f"{args.device} {args.dtype}, batch {args.batch_size} x ({args.frames} frames, {args.text_tokens} text + "
          f"{sizes['projector']['num_queries']} visual tokens, {args.answer_tokens} answer tokens), checkpointing "
          f"{'off' if args.no_checkpointing else 'on'}, loss chunk {args.loss_chunk_size}, {n_train / 1e6:.1f} M "
          f"trainable, median of {args.steps} steps")  # fmt: skip
    for name in PHASES:
        print(f"  {name:<14} {phase[name]:>9.3f} s  {100 * phase[name] / total:>5.1f} %")
    print(f"  {'step':<14} {total:>9.3f} s")
    print(f"  FLOPs per step (FlopCounterMode, no recomputation): SigLIP {flops['vision'] / 1e9:.4g} G, projector "
          f"{flops['projector'] / 1e9:.4g} G, LLM {flops['llm'] / 1e9:.4g} G, total {flops['total'] / 1e9:.4g} G")
    print(f"  peak: {peak:.4g} TFLOP/s ({source})" + (f"; max memory allocated {memory:.1f} GiB" if memory else ""))
    print(f"tokens/s {tokens / total:.1f}, frames/s {frames / total:.1f}, MFU {100 * mfu:.1f} % "
          f"(loss {losses[-1]:.3f})")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "phases_s": phase, "step_s": total, "tokens_per_s": tokens / total, "frames_per_s": frames / total,
            "flops": flops, "peak_tflops": peak, "peak_source": source, "mfu": mfu, "max_memory_gib": memory,
            "losses": losses, "args": vars(args),
        }, indent=2) + "\n")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
