"""Check tools/plan_memory.py against measured memory: train a real recipe, scaled down, on CPU and compare.

    python tools/bench_plan_memory.py                              # stage 2 of Qwen2.5-7B, ckpt on and off
    python tools/bench_plan_memory.py --config CONFIG --json

What it does, per setting:

1. writes a random LLM (``--llm-arch`` qwen2, phi3 or llama) and SigLIP vision tower (``--llm-*`` /
   ``--vision-*`` sizes; big enough that tensors, not the framework, dominate memory) to ``--out`` with
   ``save_pretrained``;
2. in a fresh Python process (``MALLOC_MMAP_THRESHOLD_`` fixed, so freed tensors leave the resident set), loads
   the recipe with ``--cfg-options`` pointing at them (fp32, projector scaled down, projector attention dropout 0
   because CPU attention with dropout uses another kernel than CUDA; everything else as in the recipe), builds
   the model and optimizer wrapper from the config, and runs two training steps (``model.train_step``: forward,
   backward, optimizer step) on a synthetic batch (``--batch-size`` samples, ``--frames`` frames,
   ``--text-tokens`` text tokens, unequal lengths so the batch is padded);
3. measures the peak resident memory of step 2 (``VmHWM`` after resetting it through ``/proc/self/clear_refs``)
   minus the resident memory before the model was built: weights, gradients, AdamW states and activations;
4. runs the planner on the same config and options (``--zero 0 --gpus 1 --device cpu``) and reports both.

Linux only (``/proc``). A few seconds per setting.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = "configs/qwen2_5_7b/videoccam_qwen2_5_7b_stage2.py"


def write_models(out: Path, args: argparse.Namespace) -> tuple[Path, Path]:
    """Random-weight Qwen2 and SigLIP folders (deterministic; reused when present)."""
    import torch
    from transformers import (
        AutoModelForCausalLM,
        LlamaConfig,
        Phi3Config,
        Qwen2Config,
        SiglipImageProcessor,
        SiglipVisionConfig,
        SiglipVisionModel,
    )

    llm_dir, vis_dir = out / f"llm_{args.llm_arch}", out / "siglip"
    if not (llm_dir / "config.json").exists():
        torch.manual_seed(0)
        config_class = {"qwen2": Qwen2Config, "phi3": Phi3Config, "llama": LlamaConfig}[args.llm_arch]
        config = config_class(
            hidden_size=args.llm_hidden, intermediate_size=args.llm_intermediate, num_hidden_layers=args.llm_layers,
            num_attention_heads=args.llm_heads, num_key_value_heads=args.llm_kv_heads, vocab_size=args.llm_vocab,
            max_position_embeddings=4096, tie_word_embeddings=False, pad_token_id=0,
        )  # fmt: skip
        AutoModelForCausalLM.from_config(config).save_pretrained(llm_dir)
    if not (vis_dir / "config.json").exists():
        torch.manual_seed(0)
        config = SiglipVisionConfig(
            hidden_size=args.vision_hidden, intermediate_size=4 * args.vision_hidden,
            num_hidden_layers=args.vision_layers, num_attention_heads=4, image_size=args.image_size, patch_size=14,
        )  # fmt: skip
        SiglipVisionModel(config).save_pretrained(vis_dir)
        size = {"height": args.image_size, "width": args.image_size}
        SiglipImageProcessor(size=size, image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(vis_dir)
    return llm_dir, vis_dir


def cfg_options(llm_dir: Path, vis_dir: Path, args: argparse.Namespace, checkpointing: bool, lora: bool) -> dict:
    """The overrides shared by the measurement and the planner (same model, same settings)."""
    lora_rank = {"model.llm_lora.r": args.lora_r, "model.visual_encoder_lora.r": args.lora_r}
    return {
        "model.llm.pretrained_model_name_or_path": str(llm_dir),
        "model.visual_encoder.pretrained_model_name_or_path": str(vis_dir),
        "model.llm.torch_dtype": "float32",
        "model.visual_encoder.torch_dtype": "float32",
        "model.llm.attn_implementation": "sdpa",
        "model.visual_encoder.attn_implementation": "sdpa",
        "model.use_activation_checkpointing": checkpointing,
        "model.pretrained_pth": None,
        "model.vision_chunk_size": args.frames * args.batch_size,
        "model.projector.num_queries": args.num_queries,
        "model.projector.hidden_size": args.projector_hidden,
        "model.projector.num_heads": 4,
        "model.projector.intermediate_size": 4 * args.projector_hidden,
        "model.projector.attention_dropout": 0.0,
        "train_dataloader.batch_size": args.batch_size,
        "train_dataloader.dataset.num_frames": args.frames,
        "train_dataloader.dataset.max_length": args.text_tokens + args.num_queries,
        **(lora_rank if lora and args.lora_r else {}),
    }


def use_plain_optim_wrapper(cfg) -> None:
    """AmpOptimWrapper (bf16 autocast) is GPU-only: swap in mmengine's OptimWrapper, keeping the optimizer."""
    for key in ("dtype", "loss_scale"):
        cfg.optim_wrapper.pop(key, None)
    cfg.optim_wrapper.type = "OptimWrapper"


# ---- measurement (runs in a fresh interpreter: python bench_plan_memory.py --measure SPEC_JSON) ----------------
def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure(spec: dict) -> list[dict]:
    """Peak memory of training step 2 for each option set in ``spec["settings"]`` (one process, in turn)."""
    import gc

    import torch

    torch.set_num_threads(spec.get("threads", 2))
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import MODELS

    from videoccam.config import load_config
    from videoccam.model.hf.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX

    batch, frames, text = spec["batch_size"], spec["frames"], spec["text_tokens"]
    vocab, size = spec["vocab"], spec["image_size"]

    def make_batch(batch: int = batch, frames: int = frames, text: int = text) -> dict:
        lengths = [text - 8 * i for i in range(batch)]  # unequal: the batch is padded, as in training
        input_ids = torch.zeros(batch, text, dtype=torch.long)
        labels = torch.full((batch, text), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros(batch, text, dtype=torch.long)
        for row, n in enumerate(lengths):
            ids = torch.randint(10, vocab, (n,))
            ids[1] = IMAGE_TOKEN_INDEX
            input_ids[row, :n] = ids
            labels[row, n // 2 : n] = ids[n // 2 :]
            attention_mask[row, :n] = 1
        return {"data": {
            "input_ids": input_ids, "labels": labels, "attention_mask": attention_mask,
            # resized uint8 frames and their normalisation, as VideoCCAMDataset and its collate give them
            "pixel_values": torch.randint(0, 256, (batch * frames, 3, size, size), dtype=torch.uint8),
            "pixel_affine": torch.tensor([[1 / 127.5] * 3, [-1.0] * 3]), "num_frames": [frames] * batch,
        }, "data_samples": None}  # fmt: skip

    def build(options: dict):
        cfg = load_config(spec["config"], options)
        use_plain_optim_wrapper(cfg)
        model = MODELS.build(cfg.model)
        model.train()
        return model, build_optim_wrapper(model, cfg.optim_wrapper)

    import time

    clock = time.perf_counter()

    def log(what: str) -> None:
        print(f"[bench] {what}: {time.perf_counter() - clock:.1f} s", file=sys.stderr)

    torch.manual_seed(0)
    # Warm-up: imports, kernel workspaces and allocator arenas that any run pays are resident before the baseline.
    model, optim_wrapper = build(spec["settings"][0])
    log("warm-up build")
    model.train_step(make_batch(batch=2, frames=2, text=32), optim_wrapper)  # small: only kernels and imports
    log("warm-up step")
    del model, optim_wrapper
    gc.collect()
    results = []
    for options in spec["settings"]:
        batch_data = [make_batch(), make_batch()]
        rss_before = _rss_kib("VmRSS")
        model, optim_wrapper = build(options)
        losses = [float(model.train_step(batch_data[0], optim_wrapper)["loss"])]
        with open("/proc/self/clear_refs", "w") as f:  # reset VmHWM to the current resident set
            f.write("5")
        rss_step = _rss_kib("VmRSS")
        losses.append(float(model.train_step(batch_data[1], optim_wrapper)["loss"]))
        peak = _rss_kib("VmHWM")
        log(f"setting (checkpointing={options['model.use_activation_checkpointing']})")
        results.append({
            "measured_bytes": (peak - rss_before) * 1024,
            "resident_before_step_bytes": (rss_step - rss_before) * 1024,
            "losses": losses,
            "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        })  # fmt: skip
        del model, optim_wrapper, batch_data
        gc.collect()
    return results


def run(configs: list[str], llm_dir: Path, vis_dir: Path, args: argparse.Namespace, modes: list[bool]) -> list[dict]:
    """Measure every (config, checkpointing) pair (one subprocess per config) and plan the same settings."""
    from videoccam.config import load_config
    from videoccam.memory_plan import plan_memory

    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0", MALLOC_ARENA_MAX="1",
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    results = []
    for config in configs:
        lora = load_config(config).model.get("llm_lora") is not None
        settings = [cfg_options(llm_dir, vis_dir, args, m, lora) for m in modes]
        spec = {
            "config": config, "settings": settings, "batch_size": args.batch_size, "frames": args.frames,
            "text_tokens": args.text_tokens, "vocab": args.llm_vocab, "image_size": args.image_size,
            "threads": args.threads,
        }  # fmt: skip
        proc = subprocess.run([sys.executable, __file__, "--measure", json.dumps(spec)], cwd=ROOT, env=env,
                              capture_output=True, text=True)
        print("\n".join(line for line in proc.stderr.splitlines() if line.startswith("[bench]")), file=sys.stderr)
        if proc.returncode != 0:
            raise RuntimeError(f"measurement of {config} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        measured = json.loads(proc.stdout.strip().splitlines()[-1])
        for checkpointing, options, m in zip(modes, settings, measured, strict=True):
            cfg = load_config(config, options)
            use_plain_optim_wrapper(cfg)
            plan = plan_memory(cfg, gpus=1, zero=0, batch_size=args.batch_size, frames=args.frames,
                               text_tokens=args.text_tokens, answer_tokens=_answer_tokens(args),
                               device="cpu", overhead_gib=0.0, config_name=config)
            results.append({
                "config": config,
                "checkpointing": checkpointing,
                "measured_bytes": m["measured_bytes"],
                "planned_bytes": plan.total_bytes,
                "ratio": plan.total_bytes / m["measured_bytes"],
                "losses": m["losses"],
                "trainable_params_measured": m["trainable_params"],
                "trainable_params_planned": sum(p["trainable"] for p in plan.params.values()),
                "plan_rows": {r.item: r.bytes for r in plan.rows},
                "peak_phase": plan.facts["peak_phase"],
            })  # fmt: skip
    return results


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", nargs="+", default=[DEFAULT_CONFIG], help="recipe(s) to measure")
    parser.add_argument("--out", default="work_dirs/bench_plan_memory", help="folder for the random models")
    parser.add_argument("--checkpointing", choices=("on", "off", "both"), default="both")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--text-tokens", type=int, default=320)
    parser.add_argument("--num-queries", type=int, default=64)
    parser.add_argument("--projector-hidden", type=int, default=128)
    parser.add_argument("--lora-r", type=int, default=32, help="LoRA rank for LLM and SigLIP (0: the recipe's)")
    parser.add_argument("--llm-arch", choices=("qwen2", "phi3", "llama"), default="qwen2")
    parser.add_argument("--llm-hidden", type=int, default=256)
    parser.add_argument("--llm-intermediate", type=int, default=1024)
    parser.add_argument("--llm-layers", type=int, default=4)
    parser.add_argument("--llm-heads", type=int, default=4)
    parser.add_argument("--llm-kv-heads", type=int, default=2)
    parser.add_argument("--llm-vocab", type=int, default=8192)
    parser.add_argument("--vision-hidden", type=int, default=128)
    parser.add_argument("--vision-layers", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    return parser


def _answer_tokens(args: argparse.Namespace) -> int:
    """Mean labelled tokens per sample of the measured batch (make_batch labels the second half of each row)."""
    lengths = [args.text_tokens - 8 * i for i in range(args.batch_size)]
    return round(sum(n - n // 2 for n in lengths) / len(lengths))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from videoccam import quiet, xtuner_compat

    quiet.install()
    xtuner_compat.install()
    if args.measure:
        print(json.dumps(measure(json.loads(args.measure))))
        return 0
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    llm_dir, vis_dir = write_models(Path(args.out), args)
    modes = {"on": [True], "off": [False], "both": [True, False]}[args.checkpointing]
    results = run(args.config, llm_dir, vis_dir, args, modes)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(f"{'config':<58}{'ckpt':>5}{'measured MiB':>14}{'planned MiB':>13}{'plan/meas':>11}")
        for r in results:
            print(f"{r['config']:<58}{'on' if r['checkpointing'] else 'off':>5}"
                  f"{r['measured_bytes'] / 2**20:>14.1f}{r['planned_bytes'] / 2**20:>13.1f}{r['ratio']:>11.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
