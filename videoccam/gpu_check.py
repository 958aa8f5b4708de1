"""The checks of ``tools/gpu_check.py``: one run that shows whether a CUDA machine trains, exports and serves Video-CCAM.

Every check is a function returning a :class:`CheckResult` (``pass``, ``fail`` or ``skip`` with the reason, its
figures and notes); :func:`run_checks` runs them in order, a failing check never stops the others.

* ``environment``: GPU, driver, CUDA, torch, transformers, peft, flash-attn, bitsandbytes, DeepSpeed and its
  ops, NCCL, with a line for each missing or mismatched piece saying what to install.
* ``tiny_fp32``, ``tiny_bf16``, ``tiny_flash_attention_2``, ``tiny_deepspeed_zero2``, ``tiny_qlora``: the tiny
  stage 2 (a tiny random Qwen2 and SigLIP written here, the CCAM projector, LoRA on the LLM and on SigLIP's layers
  that reach the projector, trainable weights in fp32) trained on synthetic videos of coloured shapes. The fp32
  run is the reference: its loss must fall (:data:`LOSS_FALL`) and the bf16 run (bf16 towers, autocast) must end
  within :data:`BF16_TOLERANCE` of it. flash-attention 2, DeepSpeed ZeRO-2 (``configs/deepspeed/zero2_bf16.json``
  on one GPU) and QLoRA (the LLM in 4 bit, bitsandbytes) repeat the bf16 run with their setting and must fall
  too. Each trained model is exported as the single Hugging Face folder (adapters merged into fresh base weights,
  :func:`videoccam.export.hf_folder.write_hf_folder`), loaded back with ``AutoModel.from_pretrained(...,
  trust_remote_code=True)`` and must answer through ``model.chat`` on the device, with the trained model's loss
  on held-out samples (:data:`EXPORT_TOLERANCE`).
* ``bench_train_step``, ``bench_projector``, ``bench_loss``, ``bench_long_video``: the existing ``tools/bench_*.py``
  at real sizes (their ``main`` with ``--json``): MFU, dense vs block-sparse cross-attention (16 and 96 frames,
  forward and training), chunked vs plain loss, streaming 16 vs 1,024 frames.
* ``memory_plan``: ``videoccam.memory_plan`` for the configuration ``bench_train_step --real-sizes`` runs (Qwen2.5-7B
  stage 2, LoRA, one GPU, no DeepSpeed) against that run's ``torch.cuda.max_memory_allocated``.

It needs torch, transformers, peft, accelerate and safetensors, at whatever versions the machine has (not the
training pins: nothing here imports mmengine or xtuner), plus DeepSpeed, bitsandbytes and flash-attn for their
checks. ``dry_run`` runs the code of every check on the CPU at tiny sizes, with a stated CPU stand-in where a
check needs the GPU (SDPA for flash-attention, no quantisation for QLoRA, gloo for NCCL, the benchmarks'
``--smoke`` sizes): that is what CI runs.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import json
import math
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from videoccam.model.gpu_options import version_tuple

ROOT = Path(__file__).resolve().parents[1]
ZERO2_JSON = ROOT / "configs/deepspeed/zero2_bf16.json"
LOSS_FALL = 0.8
"""A tiny run passes when the mean loss of its last tenth of steps is at most this share of its first tenth's
(the dry run's 8 steps on one batch: :data:`DRY_RUN_LOSS_FALL`)."""
DRY_RUN_LOSS_FALL = 0.95
BF16_TOLERANCE = 0.1
"""The bf16 run's final loss may differ from the fp32 run's by this share of it (bf16 rounding over the run)."""
EXPORT_TOLERANCE = 0.05
"""The exported folder's held-out loss may differ from the trained model's by this share (merged bf16 weights)."""
REQUIRED = ("torch", "transformers", "peft", "accelerate", "safetensors")
INSTALL = {
    "peft": "pip install peft",
    "accelerate": "pip install accelerate",
    "safetensors": "pip install safetensors",
    "flash_attn": "pip install flash-attn --no-build-isolation",
    "bitsandbytes": "pip install 'bitsandbytes>=0.45.1,<0.46'",
    "deepspeed": "pip install 'deepspeed>=0.17.2,<0.19.7'",
}
TRAINING_PINS = {"transformers": "4.48.0"}


@dataclasses.dataclass
class CheckResult:
    """The outcome of one check: ``status`` is ``pass``, ``fail`` or ``skip`` (``reason`` says why)."""

    name: str
    status: str
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # this process and its children, user + system
    figures: dict[str, Any] = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)
    stand_in: str | None = None  # what ran instead on the CPU (dry run)
    reason: str | None = None  # why it failed or was skipped

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Options:
    """What :func:`run_checks` runs: ``quick`` (shorter trainings and benchmarks), ``dry_run`` (CPU, tiny)."""

    dry_run: bool = False
    quick: bool = False
    work_dir: Path = ROOT / "work_dirs" / "gpu_check"
    only: Sequence[str] | None = None
    measurements: dict[str, Any] = dataclasses.field(default_factory=dict)  # what later checks compare with

    @property
    def device(self) -> torch.device:
        return torch.device("cpu" if self.dry_run else "cuda")

    @property
    def steps(self) -> int:
        """Training steps of each tiny run."""
        return 8 if self.dry_run else 100 if self.quick else 300

    @property
    def lr(self) -> float:
        """AdamW's learning rate of the tiny runs (the dry run overfits one batch in a few steps)."""
        return 1e-2 if self.dry_run else 2e-3

    @property
    def tiny_sizes(self) -> dict[str, int]:
        """Training and held-out samples, frames per video, batch size of the tiny runs."""
        if self.dry_run:
            return dict(num_train=4, num_held_out=2, frames=4, batch_size=4)
        return dict(num_train=64, num_held_out=8, frames=8, batch_size=8)


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _importable(module: str) -> tuple[bool, str | None]:
    """(imports, the error) — e.g. bitsandbytes 0.45.0 installed but failing on triton >= 3.2."""
    if importlib.util.find_spec(module) is None:
        return False, "not installed"
    try:
        __import__(module)
    except Exception as e:  # noqa: BLE001 - report any import failure of an optional package
        return False, f"{type(e).__name__}: {e}"
    return True, None


# ----------------------------------------------------------------------------------------------------------------
# environment
# ----------------------------------------------------------------------------------------------------------------
def _driver() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None


DEEPSPEED_OPS = ("fused_adam", "cpu_adam", "async_io")
"""The DeepSpeed ops a recipe can reach: FusedAdam (a JSON's own optimizer), CPUAdam (optimizer offload), async I/O
(NVMe offload). The project's JSONs use torch's AdamW and need none of them."""


def _deepspeed_ops() -> dict[str, bool] | str:
    """Whether each of :data:`DEEPSPEED_OPS` can be built here (``ds_report``'s "compatible" column)."""
    try:
        from deepspeed.ops.op_builder.all_ops import ALL_OPS
    except Exception as e:  # noqa: BLE001 - an old or broken DeepSpeed: report it
        return f"cannot list ops: {type(e).__name__}: {e}"
    ops = {}
    for name, builder in sorted((n, b) for n, b in ALL_OPS.items() if n in DEEPSPEED_OPS):
        try:
            ops[name] = bool(builder.is_compatible(verbose=False))
        except Exception:  # noqa: BLE001 - a builder that cannot even check counts as not compatible
            ops[name] = False
    return ops


def check_environment(options: Options) -> CheckResult:
    """Versions of everything the checks and training use; a note with the fix for each missing or odd piece."""
    result = CheckResult("environment", "pass")
    figures, notes = result.figures, result.notes
    figures["python"] = sys.version.split()[0]
    figures.update({name: _version(name) for name in ("torch", "transformers", "peft", "accelerate", "safetensors")})
    figures["cuda_runtime"] = torch.version.cuda
    figures["cuda_available"] = torch.cuda.is_available()
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        figures.update(gpu=torch.cuda.get_device_name(0), gpu_count=torch.cuda.device_count(),
                       gpu_memory_gib=round(props.total_memory / 2**30, 1),
                       compute_capability=f"{props.major}.{props.minor}",
                       bf16_supported=torch.cuda.is_bf16_supported(), driver=_driver(),
                       cudnn=torch.backends.cudnn.version())  # fmt: skip
        try:
            figures["nccl"] = ".".join(map(str, torch.cuda.nccl.version()))
        except Exception as e:  # noqa: BLE001 - a torch without NCCL
            figures["nccl"] = None
            notes.append(f"NCCL: not available ({e}); multi-GPU training needs a torch built with NCCL")
    elif not options.dry_run:
        result.status, result.reason = "fail", "torch.cuda.is_available() is False: no CUDA GPU, driver or CUDA torch"
    for package in REQUIRED:
        if figures.get(package) is None:
            result.status, result.reason = "fail", f"{package} is not installed"
            notes.append(f"{package}: missing, needed by every check: {INSTALL.get(package, f'pip install {package}')}")
    for package, pin in TRAINING_PINS.items():
        if figures.get(package) and figures[package] != pin:
            notes.append(f"{package} {figures[package]}: training (xtuner 0.2.0) needs {package}=={pin}; these "
                         "checks run with what is installed")  # fmt: skip
    ok, error = _importable("flash_attn")
    figures["flash_attn"] = _version("flash-attn") or _version("flash_attn") if ok else None
    if not ok:
        notes.append(f"flash-attn: {error}; {INSTALL['flash_attn']} (optional: SDPA otherwise), else its check "
                     "is skipped")  # fmt: skip
    ok, error = _importable("bitsandbytes") if torch.cuda.is_available() else (False, "needs CUDA")
    figures["bitsandbytes"] = _version("bitsandbytes")
    version = figures["bitsandbytes"]
    if version and not (0, 45, 1) <= version_tuple(version) < (0, 46, 0):
        notes.append(f"bitsandbytes {version}: QLoRA training is tested with {INSTALL['bitsandbytes'][12:]} (0.45.0 "
                     "breaks on triton >= 3.2; later releases break transformers 4.48's check)")  # fmt: skip
    if not version or not ok:
        notes.append(f"bitsandbytes: {error or 'not installed'}; {INSTALL['bitsandbytes']} (QLoRA only)")
    figures["deepspeed"] = _version("deepspeed")
    if figures["deepspeed"] is None:
        notes.append(f"deepspeed: not installed; {INSTALL['deepspeed']} (the recipes train with it)")
    else:
        version = version_tuple(figures["deepspeed"])
        if version >= (0, 19, 7):
            notes.append(f"deepspeed {figures['deepspeed']}: 0.19.7 and later break mmengine 0.10.6 (training); "
                         f"{INSTALL['deepspeed']}")  # fmt: skip
        if version < (0, 17, 2):
            notes.append(f"deepspeed {figures['deepspeed']}: configs/deepspeed/zero2_bf16.json needs torch_autocast "
                         f"(0.17.2 or later); {INSTALL['deepspeed']}")  # fmt: skip
        figures["deepspeed_ops"] = _deepspeed_ops()
    return result


# ----------------------------------------------------------------------------------------------------------------
# the tiny stage 2: data, model, training, export
# ----------------------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class TinyData:
    """The tiny models' folder, their processors and the synthetic samples (``train`` and ``held_out``)."""

    folder: Path
    tokenizer: Any
    image_processor: Any
    train: list[dict[str, Any]]
    held_out: list[dict[str, Any]]


def _scene(rng: random.Random, index: int, frames: int, size: int) -> tuple[Any, list[str]]:
    """A video of 2 or 3 coloured shapes one after another (``videoccam.synthetic.shapes``)."""
    from videoccam.synthetic import shapes

    count = rng.randint(2, 3)
    colors = rng.sample(list(shapes.COLORS), count)
    radius = round(size * shapes.SHAPE_RADIUS)
    events = []
    for j, color in enumerate(colors):
        center = (rng.uniform(radius + 2, size - radius - 2), rng.uniform(radius + 2, size - radius - 2))
        events.append(shapes.ShapeEvent(color=color, shape=rng.choice(shapes.SHAPES), start_frame=j * frames // count,
                                        end_frame=(j + 1) * frames // count, start_center=center, end_center=center,
                                        radius=radius))  # fmt: skip
    scene = shapes.VideoScene(id=f"gpu_check_{index}", video="", num_frames=frames, fps=shapes.VIDEO_FPS,
                              size=size, events=events)  # fmt: skip
    return scene, [event.name for event in events]


def _encode(tokenizer: Any, question: str, answer: str | None) -> tuple[list[int], int]:
    """Token ids of the conversation with the media placeholder id, and the length of its prompt (the chat
    template and :func:`tokenize_with_media` exactly as ``VideoCCAMForCausalLM.chat`` builds prompts)."""
    from videoccam.model.hf.constants import IMAGE_TOKEN_INDEX, MEDIA_TOKENS
    from videoccam.model.hf.modeling_videoccam import tokenize_with_media

    user = [{"role": "user", "content": f"<video>\n{question}"}]
    prompt = tokenizer.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
    prompt_ids = tokenize_with_media(prompt, tokenizer, list(MEDIA_TOKENS), IMAGE_TOKEN_INDEX)
    if answer is None:
        return prompt_ids, len(prompt_ids)
    full = tokenizer.apply_chat_template(user + [{"role": "assistant", "content": answer}], tokenize=False)
    ids = tokenize_with_media(full, tokenizer, list(MEDIA_TOKENS), IMAGE_TOKEN_INDEX)
    if ids[: len(prompt_ids)] != prompt_ids:
        raise ValueError("the chat template's prompt is not a prefix of the conversation; cannot label the answer")
    return ids, len(prompt_ids)


def make_tiny_data(work_dir: Path, num_train: int = 64, num_held_out: int = 8, frames: int = 8) -> TinyData:
    """Tiny random Qwen2 + SigLIP (written once into ``work_dir/tiny_models``) and synthetic video QA samples.

    Each sample holds its ``input_ids`` (a media placeholder), ``labels`` (the answer and end-of-turn tokens),
    ``pixel_values`` [frames, 3, 64, 64], its PIL ``frames`` and ``question`` / ``answer``. Memory and time grow
    linearly with the number of samples (about 0.4 MB and a few ms each).
    """
    from PIL import Image
    from transformers import AutoImageProcessor, AutoTokenizer

    from videoccam.model.hf.constants import IGNORE_INDEX
    from videoccam.synthetic import shapes, tiny_models

    folder = Path(work_dir) / "tiny_models"
    if not (folder / "qwen2/config.json").is_file():
        tiny_models.write_qwen2(folder / "qwen2", pretrain_steps=0)
    if not (folder / "siglip/config.json").is_file():
        tiny_models.write_siglip(folder / "siglip")
    tokenizer = AutoTokenizer.from_pretrained(str(folder / "qwen2"))
    image_processor = AutoImageProcessor.from_pretrained(str(folder / "siglip"))
    size = tiny_models.SIGLIP_CONFIG["image_size"]
    rng = random.Random(0)
    samples = []
    for i in range(num_train + num_held_out):
        scene, names = _scene(rng, i, frames, size)
        question, answer = shapes.video_qa(names, rng.choice(("first", "last", "first_color", "count")), rng)
        ids, prompt_len = _encode(tokenizer, question, answer)
        pil = [Image.fromarray(frame) for frame in shapes.render_video(scene)]
        samples.append({
            "input_ids": ids, "labels": [IGNORE_INDEX] * prompt_len + ids[prompt_len:], "frames": pil,
            "pixel_values": image_processor(pil, return_tensors="pt")["pixel_values"], "question": question,
            "answer": answer,
        })  # fmt: skip
    return TinyData(folder, tokenizer, image_processor, samples[:num_train], samples[num_train:])


def collate(samples: Sequence[dict[str, Any]], pad_id: int) -> dict[str, Any]:
    """The training collate (right-padded ``input_ids`` / ``labels`` / ``attention_mask``, all frames, frames per
    item) as keyword arguments of the model's forward."""
    from videoccam.dataset.collate import videoccam_collate_fn

    batch = videoccam_collate_fn(list(samples), pad_id)["data"]
    del batch["skipped"]  # the tiny data has no skipped sample
    return batch


@dataclasses.dataclass
class Variant:
    """One tiny run: towers' dtype, attention, autocast, DeepSpeed, 4-bit LLM; ``stand_in`` on the CPU."""

    name: str
    dtype: torch.dtype = torch.bfloat16
    attn: str = "sdpa"
    deepspeed: bool = False
    qlora: bool = False
    stand_in: str | None = None

    @property
    def autocast(self) -> bool:
        return self.dtype != torch.float32 and not self.deepspeed  # DeepSpeed autocasts itself (the JSON)


LLM_LORA = dict(r=16, lora_alpha=32, lora_dropout=0.0)
VISION_LORA = dict(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "k_proj", "v_proj", "out_proj",
                                                                          "fc1", "fc2"])  # fmt: skip
PROJECTOR = dict(num_queries=16, hidden_size=64, num_heads=4, intermediate_size=128, dropout=0.0,
                 attention_dropout=0.0)  # fmt: skip


def _dtype_kwargs(dtype: torch.dtype) -> dict[str, Any]:
    """``from_pretrained``'s dtype argument: ``dtype`` from transformers 5 on, ``torch_dtype`` before."""
    return {"dtype" if version_tuple(_version("transformers") or "0")[0] >= 5 else "torch_dtype": dtype}


def _towers(data: TinyData, variant: Variant, device: torch.device, with_lora: bool = True) -> tuple[Any, Any]:
    """The tiny LLM and SigLIP as ``from_pretrained`` loads them for ``variant``, with LoRA (trainable, fp32)."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig, SiglipVisionModel

    kwargs = {**_dtype_kwargs(variant.dtype), "attn_implementation": variant.attn}
    llm_kwargs = dict(kwargs)
    if variant.qlora and variant.stand_in is None:
        llm_kwargs.update(quantization_config=BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16), device_map={"": device.index or 0})  # fmt: skip
    llm = AutoModelForCausalLM.from_pretrained(str(data.folder / "qwen2"), **llm_kwargs)
    vision = SiglipVisionModel.from_pretrained(str(data.folder / "siglip"), **kwargs)
    if not variant.qlora or variant.stand_in is not None:
        llm.to(device)
    vision.to(device)
    llm.config.use_cache = False
    llm.requires_grad_(False)
    vision.requires_grad_(False)
    if not with_lora:
        return llm, vision
    if variant.qlora:
        llm = prepare_model_for_kbit_training(llm, use_gradient_checkpointing=False)
    names = sorted({name.split(".")[-1] for name, m in llm.named_modules()
                    if isinstance(m, torch.nn.Linear) and not name.endswith("lm_head")})  # fmt: skip
    llm = get_peft_model(llm, LoraConfig(target_modules=names, **LLM_LORA))
    used = vision.config.num_hidden_layers - 1  # the layers reaching hidden_states[-2]
    vision = get_peft_model(vision, LoraConfig(layers_to_transform=list(range(used)), layers_pattern="layers",
                                               **VISION_LORA))  # fmt: skip
    for module in (llm, vision):
        for param in module.parameters():
            if param.requires_grad:
                param.data = param.data.float()
    return llm, vision


def build_tiny_model(data: TinyData, variant: Variant, device: torch.device, llm: Any = None,
                     vision: Any = None) -> Any:  # fmt: skip
    """A :class:`VideoCCAMForCausalLM` around the tiny towers (LoRA-wrapped for training) and a new fp32 projector."""
    from accelerate import init_empty_weights

    from videoccam.model.hf.ccam_projector import CCAMProjector, CCAMProjectorConfig
    from videoccam.model.hf.configuration_videoccam import VideoCCAMConfig
    from videoccam.model.hf.constants import MEDIA_TOKENS
    from videoccam.model.hf.modeling_videoccam import VideoCCAMForCausalLM

    if llm is None:
        llm, vision = _towers(data, variant, device)
    base_llm = llm.get_base_model() if hasattr(llm, "get_base_model") else llm
    base_vision = vision.get_base_model() if hasattr(vision, "get_base_model") else vision
    torch.manual_seed(0)
    projector = CCAMProjector(CCAMProjectorConfig(cross_hidden_size=base_vision.config.hidden_size,
                                                  output_size=base_llm.config.hidden_size, **PROJECTOR))
    image_id, video_id = data.tokenizer.convert_tokens_to_ids(list(MEDIA_TOKENS))
    config = VideoCCAMConfig(text_config=base_llm.config, vision_config=base_vision.config,
                             projector_config=projector.config, image_token_id=image_id, video_token_id=video_id,
                             vision_chunk_size=16)  # fmt: skip
    with init_empty_weights(include_buffers=False):
        model = VideoCCAMForCausalLM(config)
    model.llm, model.visual_encoder, model.projector = llm, vision, projector.to(device)
    return model


def _losses_fall(losses: Sequence[float]) -> tuple[float, float]:
    """Mean loss of the first and of the last tenth of the steps (at least one step each)."""
    n = max(1, len(losses) // 10)
    return sum(losses[:n]) / n, sum(losses[-n:]) / n


def _batches(data: TinyData, steps: int, batch_size: int) -> list[list[dict[str, Any]]]:
    """``steps`` batches drawn (seeded) from the training samples; all of them each step when they fit one batch."""
    rng = random.Random(1)
    if batch_size >= len(data.train):
        return [list(data.train) for _ in range(steps)]
    return [rng.sample(data.train, batch_size) for _ in range(steps)]


def _to(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def train_tiny(data: TinyData, variant: Variant, options: Options) -> tuple[Any, list[float]]:
    """Train the tiny stage 2 for ``options.steps`` steps (AdamW at ``options.lr``, clip 1.0); returns (model,
    losses)."""
    device = options.device
    torch.manual_seed(0)
    model = build_tiny_model(data, variant, device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=options.lr, weight_decay=0.0)
    pad = data.tokenizer.pad_token_id or 0
    batches = _batches(data, options.steps, options.tiny_sizes["batch_size"])
    losses = []
    model.train()
    if variant.deepspeed:
        return _train_deepspeed(model, optimizer, batches, pad, options)
    for samples in batches:
        batch = _to(collate(samples, pad), device)
        with torch.autocast(device.type, dtype=variant.dtype, enabled=variant.autocast):
            loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    return model, losses


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train_deepspeed(model: Any, optimizer: Any, batches: list, pad: int, options: Options) -> tuple[Any, list]:
    """The same steps through DeepSpeed with ``configs/deepspeed/zero2_bf16.json`` in one process (NCCL on the
    GPU, gloo on the CPU), each batch as 2 accumulated micro-batches (fp32 accumulation, bf16 autocast)."""
    import deepspeed
    import torch.distributed as dist

    config = json.loads(ZERO2_JSON.read_text())
    micro = len(batches[0]) // 2
    config.update(train_micro_batch_size_per_gpu=micro, gradient_accumulation_steps=2, gradient_clipping=1.0)
    if options.dry_run:
        config["zero_optimization"]["overlap_comm"] = False  # no CUDA streams on a CPU
    started = not dist.is_initialized()
    if started:
        for key, value in (("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", str(_free_port())), ("RANK", "0"),
                           ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0")):  # fmt: skip
            os.environ.setdefault(key, value)
        deepspeed.init_distributed(dist_backend="gloo" if options.dry_run else "nccl")
    try:
        engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, config=config)
        if not hasattr(engine, "torch_autocast_enabled"):
            raise RuntimeError(f"deepspeed {deepspeed.__version__} ignores zero2_bf16.json's torch_autocast; "
                               f"{INSTALL['deepspeed']}")  # fmt: skip
        losses = []
        for samples in batches:
            step = []
            for half in (samples[:micro], samples[micro:]):
                loss = engine(**_to(collate(half, pad), options.device)).loss
                engine.backward(loss)
                engine.step()
                step.append(float(loss.detach()))
            losses.append(sum(step) / len(step))
        engine.destroy()
        return engine.module, losses
    finally:
        if started:
            dist.destroy_process_group()


@torch.no_grad()
def held_out_loss(model: Any, data: TinyData, device: torch.device, dtype: torch.dtype) -> float:
    """Mean of the per-sample losses over the held-out samples (eval mode, autocast for low-precision towers)."""
    model.eval()
    pad = data.tokenizer.pad_token_id or 0
    losses = []
    for sample in data.held_out:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            losses.append(float(model(**_to(collate([sample], pad), device)).loss))
    return sum(losses) / len(losses)


def export_tiny(model: Any, data: TinyData, variant: Variant, device: torch.device, out: Path) -> Path:
    """The trained model as the single Hugging Face folder: its LoRA adapters merged into freshly loaded dense
    base weights (in the towers' dtype; a 4-bit LLM's base in bf16), its projector, the tiny tokenizer (chat
    template, media tokens) and image processor."""
    from peft import get_peft_model_state_dict, set_peft_model_state_dict
    from transformers import GenerationConfig

    from videoccam.export.hf_folder import write_hf_folder

    dense = dataclasses.replace(variant, qlora=False, attn="sdpa")
    llm, vision = _towers(data, dense, device)
    for fresh, trained in ((llm, model.llm), (vision, model.visual_encoder)):
        set_peft_model_state_dict(fresh, get_peft_model_state_dict(trained))
    llm, vision = llm.merge_and_unload(), vision.merge_and_unload()
    for module in (llm, vision):
        module.to(variant.dtype)
    llm.config.use_cache = True
    hf_model = build_tiny_model(data, dense, device, llm=llm, vision=vision)
    hf_model.projector.load_state_dict(model.projector.state_dict())
    hf_model.projector.to(variant.dtype)
    hf_model.generation_config = GenerationConfig.from_pretrained(str(data.folder / "qwen2"))
    write_hf_folder(hf_model, data.tokenizer, data.image_processor, out)
    return out


def chat_with_export(folder: Path, data: TinyData, variant: Variant, device: torch.device) -> dict[str, Any]:
    """Load the folder as users do and ask about a held-out video through ``model.chat``; its held-out loss."""
    from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(str(folder), trust_remote_code=True, **_dtype_kwargs(variant.dtype))
    model.to(device).eval()
    tokenizer, processor = AutoTokenizer.from_pretrained(str(folder)), AutoImageProcessor.from_pretrained(str(folder))
    sample = data.held_out[0]
    reply = model.chat([[{"role": "user", "content": f"<video>\n{sample['question']}"}]], [sample["frames"]],
                       tokenizer, processor, max_new_tokens=12, do_sample=False)[0]  # fmt: skip
    loss = held_out_loss(model, data, device, variant.dtype)
    return {"reply": reply, "question": sample["question"], "expected": sample["answer"], "export_loss": loss,
            "device": str(next(model.parameters()).device)}  # fmt: skip


def _tiny_check(name: str, data_fn: Callable[[], TinyData], variant: Variant, options: Options,
                reference: dict[str, Any] | None = None) -> CheckResult:  # fmt: skip
    """Train, export and chat one variant; pass when the loss falls, the export answers with the trained model's
    held-out loss and (``reference``: the fp32 run) the final loss is within :data:`BF16_TOLERANCE` of it."""
    result = CheckResult(name, "pass", stand_in=variant.stand_in)
    data = data_fn()
    model, losses = train_tiny(data, variant, options)
    first, last = _losses_fall(losses)
    trained_loss = held_out_loss(model, data, options.device, variant.dtype)
    result.figures.update(steps=len(losses), loss_first=round(first, 4), loss_last=round(last, 4),
                          held_out_loss=round(trained_loss, 4), attn=variant.attn, dtype=str(variant.dtype))
    problems = []
    if not all(math.isfinite(x) for x in losses):
        problems.append("non-finite loss")
    fall = DRY_RUN_LOSS_FALL if options.dry_run else LOSS_FALL
    if not last <= fall * first:
        problems.append(f"the loss did not fall to {fall:.0%} of its start ({first:.3f} -> {last:.3f})")
    if reference is not None:
        gap = abs(last - reference["loss_last"]) / reference["loss_last"]
        result.figures.update(fp32_loss_last=reference["loss_last"], relative_gap_to_fp32=round(gap, 4))
        if gap > BF16_TOLERANCE:
            problems.append(f"final loss {last:.4f} differs from the fp32 run's {reference['loss_last']:.4f} by "
                            f"{gap:.1%} > {BF16_TOLERANCE:.0%}")  # fmt: skip
    folder = export_tiny(model, data, variant, options.device, options.work_dir / "exports" / name)
    del model
    answer = chat_with_export(folder, data, variant, options.device)
    result.figures.update(answer)
    export_gap = abs(answer["export_loss"] - trained_loss) / trained_loss
    result.figures["export_relative_gap"] = round(export_gap, 4)
    if not answer["reply"]:
        problems.append("the exported model answered with an empty string")
    if export_gap > EXPORT_TOLERANCE:
        problems.append(f"the export's held-out loss {answer['export_loss']:.4f} differs from the trained model's "
                        f"{trained_loss:.4f} by {export_gap:.1%} > {EXPORT_TOLERANCE:.0%}")  # fmt: skip
    if problems:
        result.status, result.reason = "fail", "; ".join(problems)
    return result


# ----------------------------------------------------------------------------------------------------------------
# real sizes: the bench tools, and the memory planner against a measurement
# ----------------------------------------------------------------------------------------------------------------
def load_tool(name: str) -> Any:
    """``tools/<name>.py`` of this repository as a module (the tools are scripts, not a package)."""
    import importlib.util as util

    module_name = f"videoccam_tool_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = util.spec_from_file_location(module_name, ROOT / "tools" / f"{name}.py")
    module = util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def run_bench(name: str, argv: list[str]) -> Any:
    """``tools/<name>.py``'s ``main(argv + ["--json", FILE])``; returns the JSON it wrote."""
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        out = Path(tmp) / "bench.json"
        code = load_tool(name).main([*argv, "--json", str(out)])
        if code != 0:
            raise RuntimeError(f"tools/{name}.py {' '.join(argv)} exited with {code}")
        return json.loads(out.read_text())


def _bench_device(options: Options) -> list[str]:
    return ["--smoke"] if options.dry_run else ["--device", "cuda", "--dtype", "bfloat16"]


def check_bench_train_step(options: Options) -> CheckResult:
    """MFU of a stage-2 training step at released sizes (SigLIP-so400m, the 7B projector, Qwen2.5-7B)."""
    argv = ["--smoke"] if options.dry_run else ["--real-sizes", "--device", "cuda", "--steps", "2" if options.quick else "5"]
    report = run_bench("bench_train_step", argv)
    result = CheckResult("bench_train_step", "pass", stand_in="--smoke sizes on the CPU" if options.dry_run else None)
    result.figures.update(mfu=round(report["mfu"], 4), step_s=round(report["step_s"], 4),
                          tokens_per_s=round(report["tokens_per_s"], 1), frames_per_s=round(report["frames_per_s"], 1),
                          peak_tflops=report["peak_tflops"], max_memory_gib=report["max_memory_gib"],
                          phases_s={k: round(v, 4) for k, v in report["phases_s"].items()})  # fmt: skip
    if not all(math.isfinite(x) for x in report["losses"]):
        result.status, result.reason = "fail", "non-finite loss"
    options.measurements["bench_train_step"] = report
    return result


def check_bench_projector(options: Options) -> CheckResult:
    """Dense vs block-sparse CCAM cross-attention at 16 and 96 frames, forward and training: speed-up and
    agreement of outputs and gradients."""
    argv = [*_bench_device(options), "--frames", "16,96", "--what", "attention,layer,projector", "--mode", "both"]
    if not options.dry_run:
        argv += ["--repeats", "3" if options.quick else "10"]
    rows = run_bench("bench_projector", argv)["rows"]
    result = CheckResult("bench_projector", "pass", stand_in="--smoke sizes on the CPU" if options.dry_run else None)
    worst = 0.0
    for row in rows:
        key = f"{row['what']}_{row['mode']}_{row['frames']}f"
        result.figures[f"{key}_speedup"] = round(row["speedup"], 3)
        worst = max(worst, row.get("max_rel_diff", 0.0) or 0.0)
    result.figures["max_rel_diff"] = worst
    if worst > 1e-2:
        result.status, result.reason = "fail", f"dense and block-sparse differ by {worst:.2g} (relative) > 1e-2"
    return result


def check_bench_loss(options: Options) -> CheckResult:
    """Chunked vs plain answer-token loss: peak memory ratio and agreement."""
    argv = ["--smoke"] if options.dry_run else ["--device", "cuda", "--dtype", "bfloat16", "--hidden", "3584",
                                               "--tokens", "8192" if options.quick else "16384"]  # fmt: skip
    report = run_bench("bench_loss", argv)
    result = CheckResult("bench_loss", "pass", stand_in="--smoke sizes on the CPU, both variants in one process"
                         if options.dry_run else None)  # fmt: skip
    result.figures.update(peak_ratio=round(report["ratio"], 3), loss_rel_diff=report["loss_relative_diff"],
                          peak_mib={v: round(f["peak_mib"], 1) for v, f in report["figures"].items()},
                          seconds={v: round(f["seconds"], 3) for v, f in report["figures"].items()})  # fmt: skip
    if report["loss_relative_diff"] > 1e-3:
        result.status, result.reason = "fail", f"chunked and plain losses differ by {report['loss_relative_diff']:.2g}"
    return result


def check_bench_long_video(options: Options) -> CheckResult:
    """Streaming 16 vs 1,024 frames through SigLIP into the projector: peak memory and time per frame."""
    frames = "16,256" if options.quick else "16,1024"
    argv = ["--smoke"] if options.dry_run else ["--device", "cuda", "--dtype", "bfloat16", "--real-sizes", "--frames",
                                               frames, "--check"]  # fmt: skip
    report = run_bench("bench_long_video", argv)
    result = CheckResult("bench_long_video", "pass", stand_in="--smoke sizes on the CPU" if options.dry_run else None)
    rows = report["rows"]
    result.figures.update(frames=[r["frames"] for r in rows], peak_mib=[round(r["peak_bytes"] / 2**20, 1) for r in rows],
                          seconds_per_frame=[round(r["seconds"] / r["frames"], 4) for r in rows],
                          peak_ratio=round(rows[-1]["peak_bytes"] / max(rows[0]["peak_bytes"], 1), 3))  # fmt: skip
    if rows[0].get("max_abs_diff") is not None:
        result.figures["streamed_vs_usual_max_abs_diff"] = rows[0]["max_abs_diff"]
    return result


class _Cfg(dict):
    """A nested dict read with attributes, as an mmengine config is (what ``plan_memory`` reads)."""

    def __getattr__(self, key: str) -> Any:
        try:
            value = self[key]
        except KeyError as e:
            raise AttributeError(key) from e
        return _Cfg(value) if isinstance(value, dict) and not isinstance(value, _Cfg) else value


def bench_plan_config(folder: Path, real_sizes: bool) -> tuple[_Cfg, dict[str, Any]]:
    """The configuration ``bench_train_step`` trains, as a config the planner reads: its LLM and SigLIP sizes
    written as ``config.json`` files into ``folder``, the projector, LoRA, batch and frames, AMP, no DeepSpeed;
    and the sizes."""
    from transformers import Qwen2Config, SiglipVisionConfig

    sizes = load_tool("bench_train_step").REAL if real_sizes else load_tool("bench_train_step").SMOKE
    Qwen2Config(**sizes["llm"], tie_word_embeddings=False).save_pretrained(folder / "llm")
    SiglipVisionConfig(**sizes["vision"]).save_pretrained(folder / "vision")
    (llm_r, llm_alpha), (vis_r, vis_alpha) = sizes["llm_lora"], sizes["vision_lora"]
    names = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    dtype = "torch.bfloat16" if real_sizes else "torch.float32"
    return _Cfg(
        model=dict(
            llm=dict(pretrained_model_name_or_path=str(folder / "llm"), torch_dtype=dtype, attn_implementation="sdpa"),
            visual_encoder=dict(pretrained_model_name_or_path=str(folder / "vision"), torch_dtype=dtype),
            projector=dict(sizes["projector"]), visual_select_layer=-2, vision_chunk_size=32,
            use_activation_checkpointing=True, freeze_llm=True, freeze_visual_encoder=True, loss_chunk_size=512,
            llm_lora=dict(r=llm_r, lora_alpha=llm_alpha, lora_dropout=0.05, target_modules=names),
            visual_encoder_lora=dict(r=vis_r, lora_alpha=vis_alpha, lora_dropout=0.05,
                                     target_modules=["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]),
        ),
        train_dataloader=dict(batch_size=sizes["batch_size"], dataset=dict(
            max_length=sizes["text_tokens"] - 1 + sizes["projector"]["num_queries"], num_frames=sizes["frames"])),
        optim_wrapper=dict(type="AmpOptimWrapper" if real_sizes else "OptimWrapper", accumulative_counts=1),
    ), sizes  # fmt: skip


def check_memory_plan(options: Options) -> CheckResult:
    """The planner for ``bench_train_step``'s real-size configuration vs that run's measured peak (CUDA)."""
    from videoccam.memory_plan import GIB, plan_memory

    result = CheckResult("memory_plan", "pass")
    with tempfile.TemporaryDirectory(prefix="gpu_check_plan_") as tmp:
        cfg, sizes = bench_plan_config(Path(tmp), real_sizes=not options.dry_run)
        plan = plan_memory(cfg, gpus=1, zero=0, batch_size=sizes["batch_size"], frames=sizes["frames"],
                           text_tokens=sizes["text_tokens"] - 1, answer_tokens=sizes["answer_tokens"],
                           device="cpu" if options.dry_run else "cuda", overhead_gib=0.0,
                           arch_source="config", config_name="bench_train_step sizes")  # fmt: skip
    planned = plan.total_bytes / GIB
    result.figures["planned_gib"] = round(planned, 3)
    measured = options.measurements.get("bench_train_step", {}).get("max_memory_gib")
    if options.dry_run:
        result.stand_in = "planned only: torch.cuda.max_memory_allocated needs CUDA (the CPU comparison is " \
                          "tools/bench_plan_memory.py)"
        return result
    if measured is None:
        result.status, result.reason = "fail", "no measurement: the bench_train_step check did not run or failed"
        return result
    ratio = planned / measured
    result.figures.update(measured_gib=round(measured, 3), planned_over_measured=round(ratio, 3))
    if not 0.7 <= ratio <= 1.3:
        result.status, result.reason = "fail", f"planned / measured = {ratio:.2f}, outside 0.7-1.3"
    return result


# ----------------------------------------------------------------------------------------------------------------
# running them
# ----------------------------------------------------------------------------------------------------------------
CHECKS = ("environment", "tiny_fp32", "tiny_bf16", "tiny_flash_attention_2", "tiny_deepspeed_zero2", "tiny_qlora",
          "bench_train_step", "bench_projector", "bench_loss", "bench_long_video", "memory_plan")  # fmt: skip


def _skip_or_stand_in(options: Options, module: str, install: str, needs_cuda: bool = True) -> tuple[str | None, str | None]:
    """(skip reason, CPU stand-in) for a check that needs ``module`` (and CUDA)."""
    ok, error = _importable(module)
    if options.dry_run:
        return None, f"{module} {'needs CUDA' if needs_cuda else 'runs'}: the code path ran on the CPU without it"
    if not ok:
        return f"{module}: {error}; {install}", None
    return None, None


def _cpu_seconds() -> float:
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run_checks(options: Options, log: Callable[[str], None] = print) -> list[CheckResult]:
    """Run :data:`CHECKS` (or ``options.only``) in order; each is timed and never stops the others."""
    options.work_dir.mkdir(parents=True, exist_ok=True)
    tiny: dict[str, TinyData] = {}

    def data() -> TinyData:
        if "data" not in tiny:
            sizes = options.tiny_sizes
            tiny["data"] = make_tiny_data(options.work_dir, sizes["num_train"], sizes["num_held_out"], sizes["frames"])
        return tiny["data"]

    reference: dict[str, Any] = {}
    results: list[CheckResult] = []
    wanted = [name for name in CHECKS if options.only is None or name in options.only]
    for name in wanted:
        log(f"[gpu_check] {name} ...")
        start, cpu = time.perf_counter(), _cpu_seconds()
        try:
            result = _run_one(name, options, data, reference)
        except Exception as e:  # noqa: BLE001 - one check's failure is reported, the others run
            result = CheckResult(name, "fail", reason=f"{type(e).__name__}: {e}")
            result.notes.append(traceback.format_exc(limit=-3))
        result.seconds = round(time.perf_counter() - start, 2)
        result.cpu_seconds = round(_cpu_seconds() - cpu, 2)
        if name == "tiny_fp32" and result.status == "pass":
            reference.update(result.figures)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        log(f"[gpu_check] {name}: {result.status}" + (f" ({result.reason})" if result.reason else ""))
        results.append(result)
    return results


def _run_one(name: str, options: Options, data: Callable[[], TinyData], reference: dict[str, Any]) -> CheckResult:
    if name == "environment":
        return check_environment(options)
    if name == "tiny_fp32":
        return _tiny_check(name, data, Variant(name, dtype=torch.float32), options)
    if name == "tiny_bf16":
        if not reference:
            return CheckResult(name, "fail", reason="no fp32 reference: tiny_fp32 failed or did not run")
        return _tiny_check(name, data, Variant(name), options, reference=reference)
    if name == "tiny_flash_attention_2":
        skip, stand_in = _skip_or_stand_in(options, "flash_attn", INSTALL["flash_attn"])
        if skip:
            return CheckResult(name, "skip", reason=skip)
        variant = Variant(name, attn="sdpa" if stand_in else "flash_attention_2", stand_in=stand_in and
                          "attn_implementation='sdpa' (flash-attention 2 needs CUDA and flash-attn)")  # fmt: skip
        return _tiny_check(name, data, variant, options)
    if name == "tiny_deepspeed_zero2":
        ok, error = _importable("deepspeed")
        if not ok:
            return CheckResult(name, "skip", reason=f"deepspeed: {error}; {INSTALL['deepspeed']}")
        variant = Variant(name, deepspeed=True, stand_in=options.dry_run and
                          "gloo on the CPU (overlap_comm off), bf16 autocast on the CPU" or None)  # fmt: skip
        return _tiny_check(name, data, variant, options)
    if name == "tiny_qlora":
        skip, stand_in = _skip_or_stand_in(options, "bitsandbytes", INSTALL["bitsandbytes"])
        if skip:
            return CheckResult(name, "skip", reason=skip)
        variant = Variant(name, qlora=True, stand_in=stand_in and "no 4-bit quantisation (bitsandbytes needs "
                          "CUDA); prepare_model_for_kbit_training and LoRA as with it")  # fmt: skip
        return _tiny_check(name, data, variant, options)
    checks = {"bench_train_step": check_bench_train_step, "bench_projector": check_bench_projector,
              "bench_loss": check_bench_loss, "bench_long_video": check_bench_long_video,
              "memory_plan": check_memory_plan}  # fmt: skip
    return checks[name](options)


def report(results: Sequence[CheckResult], options: Options, seconds: float) -> dict[str, Any]:
    """The JSON report: options, total time, every check, the failed ones."""
    return {
        "tool": "tools/gpu_check.py",
        "dry_run": options.dry_run,
        "quick": options.quick,
        "seconds": round(seconds, 1),
        "checks": [r.to_dict() for r in results],
        "failed": [r.name for r in results if r.status == "fail"],
        "skipped": [r.name for r in results if r.status == "skip"],
    }


def _short(figures: dict[str, Any]) -> str:
    keys = ("gpu", "torch", "transformers", "loss_first", "loss_last", "relative_gap_to_fp32", "reply", "mfu",
            "attention_forward_96f_speedup", "attention_train_96f_speedup", "peak_ratio", "planned_gib",
            "measured_gib", "planned_over_measured")  # fmt: skip
    parts = [f"{k}={figures[k]!r}" if isinstance(figures[k], str) else f"{k}={figures[k]}" for k in keys
             if k in figures]  # fmt: skip
    return ", ".join(parts)[:150]


def format_table(results: Sequence[CheckResult]) -> str:
    """One line per check: name, status, seconds, the main figures (or the reason)."""
    lines = [f"{'check':<24} {'status':<6} {'s':>7} {'CPU s':>7}  figures / reason", "-" * 100]
    for r in results:
        detail = r.reason if r.status != "pass" else _short(r.figures)
        if r.stand_in:
            detail = f"{detail} [stand-in: {r.stand_in}]" if detail else f"[stand-in: {r.stand_in}]"
        lines.append(f"{r.name:<24} {r.status:<6} {r.seconds:>7.1f} {r.cpu_seconds:>7.1f}  {detail}")
    return "\n".join(lines)
