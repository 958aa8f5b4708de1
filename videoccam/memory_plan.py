"""Per-GPU memory estimate of a Video-CCAM training config, without loading any weights.

The model parts are built as empty skeletons on the ``meta`` device from their ``config.json`` (a local folder
or the Hugging Face cache), or, for the released architectures when no ``config.json`` is reachable (no
network), from :data:`BUILTIN_ARCHITECTURES`, the values of the released ``config.json`` files. Parameter counts,
LoRA adapter sizes and the projector come from those skeletons; memory is then computed term by term:

* **weights**: every parameter in its training dtype (bitsandbytes 4-bit: half a byte plus the block constants;
  the parameters ``prepare_model_for_kbit_training`` leaves unquantised are upcast to fp32);
* **gradients and AdamW states** of the trainable parameters (projector, LoRA), as the project's DeepSpeed JSONs
  train them (:attr:`_Setup.mode`). ZeRO-1/2 (``configs/deepspeed/zero2_bf16.json``): trainable weights fp32,
  frozen ones as loaded, matrix products in bf16 under ``torch_autocast``, fp32 gradients (partitioned from
  ZeRO-2), DeepSpeed's fp32 copy of each partition plus two fp32 moments (12 bytes per trainable parameter,
  partitioned), two reduce buckets of ``reduce_bucket_size`` fp32 elements per communication dtype (bf16 for
  linear layers, fp32 for the rest) with ``overlap_comm``. ZeRO-3 (``zero3_bf16.json``): every weight bf16 and
  partitioned (VideoCCAMModel stores the trainable ones in bf16), fp32 gradient partitions
  (``grad_accum_dtype``), 12 bytes per trainable parameter of fp32 master and moments, partitioned. An fp32 model
  (the CPU JSONs) trains everything in fp32. ``zero=0`` is mmengine's optimizer wrapper (DDP or one process):
  frozen parameters keep their loaded dtype, trainable ones are fp32 (LoRA adapters by peft's default; the
  projector and unfrozen bf16 towers upcast by VideoCCAMModel, as there is no master copy) and AdamW keeps its
  two moments in fp32, unpartitioned;
* **activations**: the tensors autograd saves for backward, counted per token for each layer type from the
  operations transformers 4.48, peft and this project's projector run (listed in :func:`llm_layer_bytes`,
  :func:`vision_layer_bytes`, :func:`projector_bytes`), with and without activation checkpointing, plus the
  peaks of the loss (logits over the vocabulary at the answer positions, upcast to fp32; with the model's
  ``loss_chunk_size`` only one chunk of answer tokens at a time) and of one recomputed layer in backward;
* fixed costs: DeepSpeed's communication buckets and a runtime allowance (CUDA context, NCCL, allocator).

The frozen LLM still keeps activations in stage 1: the loss is back-propagated through it into the projector.
Frozen linear layers save no input (only their weight is needed for the input gradient), so the counts per
layer differ from a full fine-tune. Kernel assumptions follow ``device``: on ``cuda`` SDPA and flash-attention
keep no attention matrix and dropout keeps a 1-byte mask; on ``cpu`` dropout keeps a mask in the tensor's dtype
and attention with dropout falls back to the math kernel (which materialises the scores; used only to
validate the planner on CPU, where the recipes' projector dropout should be set to 0).
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from videoccam.model.chunked_loss import DEFAULT_LOSS_CHUNK_SIZE
from videoccam.model.gpu_options import requested_quantization_bits

GIB = 1024**3

# Values of the released config.json files (hub id -> transformers config class kwargs). Used only when the
# config cannot be read (no network, not in the HF cache); the plan says so.
BUILTIN_ARCHITECTURES: dict[str, dict[str, Any]] = {
    "microsoft/Phi-3-mini-4k-instruct": dict(
        model_type="phi3", hidden_size=3072, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
        intermediate_size=8192, vocab_size=32064, max_position_embeddings=4096, tie_word_embeddings=False,
        sliding_window=2047,
    ),
    "microsoft/Phi-3.5-mini-instruct": dict(
        model_type="phi3", hidden_size=3072, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
        intermediate_size=8192, vocab_size=32064, max_position_embeddings=131072, tie_word_embeddings=False,
        sliding_window=262144,
    ),
    "Qwen/Qwen2.5-7B-Instruct": dict(
        model_type="qwen2", hidden_size=3584, num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
        intermediate_size=18944, vocab_size=152064, max_position_embeddings=32768, tie_word_embeddings=False,
        sliding_window=131072, use_sliding_window=False, max_window_layers=28,
    ),
    "01-ai/Yi-1.5-9B-Chat": dict(
        model_type="llama", hidden_size=4096, num_hidden_layers=48, num_attention_heads=32, num_key_value_heads=4,
        intermediate_size=11008, vocab_size=64000, max_position_embeddings=4096, tie_word_embeddings=False,
    ),
    "microsoft/Phi-3-medium-4k-instruct": dict(
        model_type="phi3", hidden_size=5120, num_hidden_layers=40, num_attention_heads=40, num_key_value_heads=10,
        intermediate_size=17920, vocab_size=32064, max_position_embeddings=4096, tie_word_embeddings=False,
        sliding_window=2047,
    ),
    "google/siglip-so400m-patch14-384": dict(
        model_type="siglip_vision_model", hidden_size=1152, num_hidden_layers=27, num_attention_heads=16,
        intermediate_size=4304, image_size=384, patch_size=14,
    ),
}  # fmt: skip

# DeepSpeed defaults (runtime/zero/config.py) for the buckets the JSONs leave unset, and the reduce bucket of
# configs/deepspeed/zero2_bf16.json (its buffers are in the optimizer's dtype, fp32 there, one pair per
# communication dtype: 4 x 5e8 fp32 elements would be 7.5 GiB).
DS_REDUCE_BUCKET = 500_000_000
DS_PREFETCH_BUCKET = 50_000_000
PROJECT_ZERO2_REDUCE_BUCKET = 200_000_000
DEFAULT_CUDA_OVERHEAD_GIB = 2.0


def dtype_bytes(dtype: Any) -> int:
    """Bytes per element of a ``torch_dtype`` config value (a dtype, "bfloat16", "torch.float16", None)."""
    if dtype is None or dtype == "auto":
        return 4  # from_pretrained's default is float32
    if isinstance(dtype, str):
        name = dtype.split(".")[-1]
        dtype = getattr(torch, name, None)
        if not isinstance(dtype, torch.dtype):
            raise ValueError(f"unknown torch_dtype {name!r}")
    return torch.empty((), dtype=dtype).element_size()


# ----------------------------------------------------------------------------------------------------------------
# Architectures and skeletons
# ----------------------------------------------------------------------------------------------------------------
def load_architecture(name_or_path: str, source: str = "auto") -> tuple[Any, str]:
    """The transformers config of a model part, and where it came from.

    Args:
        name_or_path: hub id or local folder (``pretrained_model_name_or_path`` of the config).
        source: ``auto`` (config.json if readable, else the built-in table), ``config`` or ``table``.

    Raises:
        ValueError: nothing usable for ``name_or_path``.
    """
    from transformers import AutoConfig

    error = None
    if source in ("auto", "config"):
        try:
            config = AutoConfig.from_pretrained(name_or_path)
            if getattr(config, "vision_config", None) is not None and config.model_type == "siglip":
                config = config.vision_config  # a full SigLIP checkpoint: the vision tower's part
            return config, f"config.json of {name_or_path}"
        except (OSError, ValueError) as e:
            error = e
    if source in ("auto", "table") and name_or_path in BUILTIN_ARCHITECTURES:
        values = dict(BUILTIN_ARCHITECTURES[name_or_path])
        model_type = values.pop("model_type")
        config = AutoConfig.for_model(model_type, **values)
        return config, f"built-in table (released config.json values of {name_or_path})"
    known = ", ".join(BUILTIN_ARCHITECTURES)
    raise ValueError(
        f"cannot read the architecture of {name_or_path!r} ({error}); pass a local folder with its config.json "
        f"via --cfg-options, or use one of the built-in released architectures: {known}"
    )


def build_skeleton(config: Any, kind: str) -> nn.Module:
    """The model on the meta device (no memory, no weights). ``kind`` is ``llm`` or ``vision``."""
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM, SiglipVisionModel

    with init_empty_weights(include_buffers=True):
        if kind == "llm":
            return AutoModelForCausalLM.from_config(config, attn_implementation="eager")
        return SiglipVisionModel._from_config(config, attn_implementation="eager")


@functools.lru_cache(maxsize=16)
def _architecture_and_skeleton(name_or_path: str, source: str, kind: str) -> tuple[Any, str, nn.Module]:
    """Cached :func:`load_architecture` + :func:`build_skeleton` (skeletons are only read, never changed)."""
    config, where = load_architecture(name_or_path, source)
    return config, where, build_skeleton(config, kind)


def _linear_layers(module: nn.Module) -> list[tuple[str, nn.Linear]]:
    return [(name, m) for name, m in module.named_modules() if isinstance(m, nn.Linear)]


def lora_targets(model: nn.Module, lora: Mapping[str, Any], layer_limit: int | None) -> list[tuple[str, nn.Linear]]:
    """The linear layers LoRA wraps, by VideoCCAMModel's rule.

    ``target_modules=None`` means every linear layer whose last name component is not ``lm_head``
    (xtuner's ``find_all_linear_names``); ``layer_limit`` keeps layers ``layers.0 .. layers.{limit-1}`` (the vision
    tower's layers that reach the projector).
    """
    names = lora.get("target_modules")
    if names is None:
        names = {name.split(".")[-1] for name, _ in _linear_layers(model)} - {"lm_head", "output_layer"}
    elif isinstance(names, str):
        names = {names}
    chosen = []
    for name, module in _linear_layers(model):
        if name.split(".")[-1] not in names:
            continue
        if layer_limit is not None:
            parts = name.split(".")
            if "layers" not in parts:
                continue
            index = parts.index("layers") + 1
            if index >= len(parts) or not parts[index].isdigit() or int(parts[index]) >= layer_limit:
                continue
        chosen.append((name, module))
    return chosen


def _layer0_linears(targets: Iterable[tuple[str, nn.Linear]]) -> list[nn.Linear]:
    return [m for name, m in targets if ".layers.0." in f".{name}."]


def _largest_block(model: nn.Module) -> int:
    """Parameters of the largest entry of any ``nn.ModuleList`` (a decoder layer): ZeRO-3's gathering unit."""
    sizes = [sum(p.numel() for p in block.parameters())
             for m in model.modules() if isinstance(m, nn.ModuleList) for block in m]
    return max(sizes) if sizes else sum(p.numel() for p in model.parameters())


def lora_param_count(targets: Iterable[tuple[str, nn.Linear]], r: int) -> int:
    return sum(r * (m.in_features + m.out_features) for _, m in targets)


# ----------------------------------------------------------------------------------------------------------------
# Activation bytes, per token of one layer (saved for backward)
# ----------------------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Precision:
    """Bytes per element: ``act`` model activations, ``adapter`` LoRA activations, ``mask`` a dropout mask."""

    act: int
    adapter: int
    mask: int


def lora_layer_bytes(in_features: Iterable[int], r: int, dropout: float, prec: Precision, shared_input: int) -> int:
    """Saved bytes per token of the LoRA branches of one layer: ``lora_B(lora_A(dropout(x)))``.

    With dropout each branch keeps its own dropped copy of x (saved by lora_A) and the mask; without, lora_A
    saves x itself (``shared_input`` distinct inputs when adapters read the same x in the base dtype).
    lora_B saves lora_A's r outputs.
    """
    in_features = list(in_features)
    total = sum(prec.adapter * r for _ in in_features)
    if dropout > 0:
        total += sum((prec.adapter + prec.mask) * n for n in in_features)
    elif prec.adapter != prec.act:
        total += sum(prec.adapter * n for n in in_features)
    else:
        total += prec.act * shared_input
    return total


def llm_layer_bytes(arch: Mapping[str, int], prec: Precision, attn: str, lora_in: list[int], lora_r: int,
                    lora_dropout: float) -> int:
    """Bytes saved for backward per token by one decoder layer (Llama / Qwen2 / Phi-3 in transformers 4.48).

    RMSNorm (x2) saves an fp32 copy of its input (``hidden.to(float32)``, then ``pow``); frozen q/k/v/o and MLP
    projections save nothing of their input. Attention: SDPA saves q, k, v (k/v repeated to all heads and made
    contiguous) and its output; flash-attention 2 saves q, k, v unrepeated and the output. SwiGLU saves the gate
    projection (silu input), silu's output and the up projection (the product's two factors).
    """
    h, hq, hkv, inter = arch["hidden"], arch["q_width"], arch["kv_width"], arch["intermediate"]
    norms = 2 * 4 * h
    attention = prec.act * (4 * hq if attn != "flash_attention_2" else 2 * hq + 2 * hkv)
    mlp = 3 * prec.act * inter
    lora = lora_layer_bytes(lora_in, lora_r, lora_dropout, prec, shared_input=h + h + hq + inter) if lora_in else 0
    return norms + attention + mlp + lora


def vision_layer_bytes(arch: Mapping[str, int], prec: Precision, lora_in: list[int], lora_r: int,
                       lora_dropout: float) -> int:
    """Bytes saved per patch token by one SigLIP encoder layer (LayerNorm inputs x2, SDPA q/k/v/out, gelu input)."""
    c, inter = arch["hidden"], arch["intermediate"]
    base = prec.act * (c + 4 * c + c + inter)
    lora = lora_layer_bytes(lora_in, lora_r, lora_dropout, prec, shared_input=c + c + inter) if lora_in else 0
    return base + lora


def _cross_attention_pairs(cfg: Mapping[str, Any], frames: int, patches: int) -> tuple[int, int]:
    """(query x key pairs the cross-attention computes, pairs covered by a boolean mask) for one video.

    Dense: every pair, all masked when the CCAM mask is on and the video has several frames. Block-sparse (what
    ``auto`` picks for large videos with the mask on): each query block's visible prefix, masked only in staircase
    blocks.
    """
    from videoccam.model.hf.ccam_projector import _BLOCKS_MIN_PAIRS, _batched_query_frame_index, _query_block_plan

    q, keys = cfg["num_queries"], frames * patches
    causal = cfg.get("causal_mask", True)
    impl = cfg.get("cross_attention", "auto")
    if impl == "auto":
        impl = "blocks" if causal and frames > 1 and q * keys >= _BLOCKS_MIN_PAIRS else "dense"
    if impl == "dense" or not causal:
        return q * keys, (q * keys if causal and frames > 1 else 0)
    tau = _batched_query_frame_index(q, torch.tensor([frames]), cfg.get("mask_mode", "floor"))
    plan = _query_block_plan(tau, cfg.get("query_blocks", 4))
    visible = sum((q1 - q0) * f * patches for q0, q1, f, _ in plan)
    return visible, sum((q1 - q0) * f * patches for q0, q1, f, masked in plan if masked)


def projector_bytes(cfg: Mapping[str, Any], videos: int, frames: int, patches: int, prec: Precision,
                    device: str, checkpointing: bool) -> dict[str, int]:
    """Bytes the CCAM projector keeps for backward for ``videos`` videos of ``frames`` frames (all trainable).

    Per block and query: LayerNorm inputs and outputs, q/k/v/out of self- and cross-attention, the merged
    attention outputs (o_proj inputs), SwiGLU (4 x intermediate: gate, silu, up, product) and 3 dropout masks;
    per key: the K and V projections (the frame features themselves are counted with the vision tower); the
    boolean CCAM masks and their float copies made by SDPA (shared by the batch when all videos have the same
    frame count; with the block-sparse cross-attention only its staircase blocks have masks). With checkpointing only each block's query input is kept, plus one block recomputed in
    backward. On CPU, attention with dropout runs the math kernel and keeps the scores (h x q x k) in fp32.
    """
    q, e, inter, heads = cfg["num_queries"], cfg["hidden_size"], cfg["intermediate_size"], cfg["num_heads"]
    depth = cfg.get("depth", 1)
    keys = frames * patches
    self_attn = cfg.get("self_attn", "causal") != "none"
    act, mask = prec.act, prec.mask
    per_query = act * 5 * e + mask * e  # cross-attention: norm in + out, q, SDPA out, merged; dropout mask
    per_query += act * (2 * e + 4 * inter) + mask * e  # MLP: norm in + out, gate, silu, up, product; mask
    if self_attn:
        per_query += act * 7 * e + mask * e  # norm in + out, q, k, v, SDPA out, merged; mask
    per_block = videos * (q * per_query + keys * act * 2 * e)  # + K and V of every key
    visible, masked = _cross_attention_pairs(cfg, frames, patches)
    bool_masks = masked + (q * q if self_attn and frames > 1 else 0)  # built once per forward (batch-shared)
    float_masks = act * bool_masks  # SDPA's float copy of each boolean mask, saved for backward
    attention_dropout = cfg.get("attention_dropout", 0.0)
    if device == "cpu" and attention_dropout > 0:  # math kernel: scores, softmax, dropout mask, dropped probs
        per_block += videos * heads * visible * 4 * 3 + (videos * heads * q * q * 4 * 3 if self_attn else 0)
    final = videos * q * act * 2 * e  # final LayerNorm input, output_proj input
    if checkpointing:
        return {"saved": depth * videos * q * act * e + final + bool_masks,
                "recompute": per_block + float_masks}
    return {"saved": depth * (per_block + float_masks) + final + bool_masks, "recompute": 0}


# ----------------------------------------------------------------------------------------------------------------
# The plan
# ----------------------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Row:
    group: str
    item: str
    bytes: int
    note: str = ""


@dataclasses.dataclass
class MemoryPlan:
    """Result of :func:`plan_memory`: table rows (bytes per GPU), facts about the run and the total."""

    rows: list[Row]
    facts: dict[str, Any]
    params: dict[str, dict[str, int]]
    total_bytes: int
    host_bytes_per_gpu: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "total_bytes": self.total_bytes,
            "total_gib": round(self.total_bytes / GIB, 3),
            "host_offload_bytes_per_gpu": self.host_bytes_per_gpu,
            "rows": [dataclasses.asdict(r) | {"gib": round(r.bytes / GIB, 3)} for r in self.rows],
            "facts": self.facts,
            "params": self.params,
        }

    def format_table(self) -> str:
        f = self.facts
        lines = [
            f"config: {f['config']}",
            f"setting: {f['gpus']} GPU(s), {f['mode']}, per-device batch {f['batch_size']} x accumulation "
            f"{f['accumulative_counts']} = global batch {f['global_batch']}, activation checkpointing "
            f"{'on' if f['checkpointing'] else 'off'}, kernels: {f['device']}",
            f"tokens per sample: {f['text_tokens']} text + {f['visual_tokens_per_sample']} visual "
            f"({f['media_per_sample']} x {f['num_queries']} queries, fixed) = {f['tokens_per_sample']} "
            f"(max_length {f['max_length']}); frames per video {f['frames']} x {f['patches_per_frame']} patches",
            f"tokens per micro-batch per GPU: {f['tokens_per_micro_batch']}; per optimizer step (all GPUs): "
            f"{f['tokens_per_step']}; frames per micro-batch: {f['frames_per_micro_batch']}",
            f"architectures: LLM from {f['llm_source']}; vision from {f['vision_source']}",
            "",
            "parameters        total          trainable      (LoRA)",
        ]
        for part, p in self.params.items():
            lines.append(f"  {part:<14}{p['total']:>14,} {p['trainable']:>14,} {p['lora']:>14,}")
        lines += ["", f"{'per GPU':<58}{'GiB':>9}  note"]
        group = None
        for row in self.rows:
            if row.group != group:
                lines.append(f"{row.group}:")
                group = row.group
            lines.append(f"  {row.item:<56}{row.bytes / GIB:>9.2f}  {row.note}")
        lines.append(f"{'TOTAL (peak estimate)':<58}{self.total_bytes / GIB:>9.2f}")
        if self.host_bytes_per_gpu:
            host = self.host_bytes_per_gpu / GIB
            lines.append(f"{'host (CPU) memory for offloaded states, per GPU':<58}{host:>9.2f}")
        return "\n".join(lines)


def _builder_path(builder: Mapping[str, Any], what: str) -> str:
    path = builder.get("pretrained_model_name_or_path")
    if not path:
        raise ValueError(f"{what}.pretrained_model_name_or_path is not set in the config")
    return str(path)


def _lora_dict(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, Mapping):
        return {k: v for k, v in value.items() if k != "type"}
    return {k: getattr(value, k, None) for k in ("r", "lora_alpha", "lora_dropout", "target_modules")}


@dataclasses.dataclass
class _Setup:
    """What the memory terms need, read once from the config and the skeletons."""

    gpus: int
    zero: int
    offload: bool
    device: str
    checkpointing: bool
    amp: bool  # mmengine AmpOptimWrapper (autocast) without DeepSpeed
    llm_config: Any
    vis_config: Any
    proj_config: Any
    llm: nn.Module
    vision: nn.Module
    projector: nn.Module
    llm_source: str
    vis_source: str
    p_llm: int  # bytes per element of the loaded LLM / SigLIP
    p_vis: int
    attn: str
    bits: int | None
    double_quant: bool
    batch: int
    accum: int
    frames: int
    media: int
    text_tokens: int
    answer_tokens: int
    num_queries: int
    max_length: int
    chunk: int
    loss_chunk: int | None
    used_vision_layers: int
    vision_trainable: bool
    llm_lora: dict[str, Any] | None
    vis_lora: dict[str, Any] | None
    llm_targets: list[tuple[str, nn.Linear]]
    vis_targets: list[tuple[str, nn.Linear]]

    @property
    def mode(self) -> str:
        """How the weights train: ``mmengine`` (zero 0: the config's optimizer wrapper), ``fp32`` (DeepSpeed on an
        fp32 model, the CPU JSONs), ``autocast`` (ZeRO-1/2 with ``configs/deepspeed/zero2_bf16.json``: fp32
        trainable weights, frozen ones as loaded, bf16 products under ``torch_autocast``) or ``bf16`` (ZeRO-3 with
        ``zero3_bf16.json``: every weight bf16, fp32 masters and gradient accumulation in the optimizer)."""
        if self.zero == 0:
            return "mmengine"
        if self.p_llm == 4:
            return "fp32"
        return "bf16" if self.zero == 3 else "autocast"

    @property
    def autocast(self) -> bool:
        """Matrix products in bf16 under autocast with fp32 trainable weights (mmengine's AMP, DeepSpeed's
        ``torch_autocast``)."""
        return self.amp or self.mode == "autocast"

    @property
    def train_bytes(self) -> int | None:
        """The one dtype every weight has under DeepSpeed in the ``fp32`` and ``bf16`` modes; None otherwise."""
        return {"fp32": 4, "bf16": 2}.get(self.mode)

    @property
    def projector_param_bytes(self) -> int:
        """The projector trains in fp32 (VideoCCAMModel upcasts it from a bf16/fp16 vision dtype) except in
        DeepSpeed's ``bf16`` mode."""
        return self.train_bytes or max(self.p_vis, 4)

    @property
    def adapter_bytes(self) -> int:
        return self.train_bytes or 4  # without DeepSpeed peft keeps adapters (and their states) in fp32

    @property
    def image_size(self) -> int:
        return int(self.vis_config.image_size)

    @property
    def patches(self) -> int:
        return (self.image_size // int(self.vis_config.patch_size)) ** 2

    @property
    def visual_tokens(self) -> int:
        return self.media * self.num_queries

    @property
    def tokens_per_sample(self) -> int:
        return self.text_tokens + self.visual_tokens

    @property
    def tokens(self) -> int:
        return self.batch * self.tokens_per_sample

    @property
    def videos(self) -> int:
        return self.batch * self.media

    @property
    def total_frames(self) -> int:
        return self.videos * self.frames

    def count(self, module: nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    @property
    def n_llm_lora(self) -> int:
        return lora_param_count(self.llm_targets, int(self.llm_lora["r"])) if self.llm_lora else 0

    @property
    def n_vis_lora(self) -> int:
        return lora_param_count(self.vis_targets, int(self.vis_lora["r"])) if self.vis_lora else 0


def _read_setup(cfg: Any, gpus: int, zero: int, offload: bool, batch_size: int | None, frames: int | None,
                text_tokens: int | None, media_per_sample: int, checkpointing: bool | None, device: str,
                arch_source: str, answer_tokens: int | None = None) -> _Setup:
    if zero not in (0, 1, 2, 3):
        raise ValueError(f"zero must be 0 (no DeepSpeed), 1, 2 or 3, got {zero}")
    if gpus < 1:
        raise ValueError(f"gpus must be >= 1, got {gpus}")
    if device not in ("cuda", "cpu"):
        raise ValueError(f"device must be 'cuda' or 'cpu', got {device!r}")
    if offload and zero == 0:
        raise ValueError("--offload needs DeepSpeed (zero 1, 2 or 3)")
    model_cfg, dataset = cfg.model, cfg.train_dataloader.dataset
    llm_b, vis_b = model_cfg.llm, model_cfg.visual_encoder
    bits = requested_quantization_bits(llm_b)
    if bits and zero == 3:
        raise ValueError("4/8-bit (QLoRA) weights cannot be partitioned by ZeRO-3; use zero 0 or 2")
    quantization = llm_b.get("quantization_config")
    double_quant = bool(quantization.get("bnb_4bit_use_double_quant", False) if isinstance(quantization, Mapping)
                        else getattr(quantization, "bnb_4bit_use_double_quant", False))

    llm_config, llm_source, llm = _architecture_and_skeleton(_builder_path(llm_b, "model.llm"), arch_source, "llm")
    vis_config, vis_source, vision = _architecture_and_skeleton(
        _builder_path(vis_b, "model.visual_encoder"), arch_source, "vision"
    )
    from accelerate import init_empty_weights

    from videoccam.model.hf.ccam_projector import CCAMProjector, CCAMProjectorConfig

    fields = {k: v for k, v in dict(model_cfg.projector).items() if k != "type"}
    if fields.get("cross_hidden_size") is None:  # VideoCCAMModel fills these from the towers
        fields["cross_hidden_size"] = vis_config.hidden_size
    if fields.get("output_size") is None:
        fields["output_size"] = llm_config.hidden_size
    proj_config = CCAMProjectorConfig(**fields)
    with init_empty_weights(include_buffers=True):
        projector = CCAMProjector(proj_config)

    num_queries = int(proj_config.num_queries)
    max_length = int(dataset.max_length)
    if media_per_sample < 0:
        raise ValueError(f"media_per_sample must be >= 0, got {media_per_sample}")
    if media_per_sample * (num_queries - 1) >= max_length - 1:  # the dataset's text budget (one id per item)
        raise ValueError(
            f"{media_per_sample} media per sample x num_queries={num_queries} visual tokens leave no room for text "
            f"within max_length={max_length}: the dataset rejects such samples; fewer media per sample or a longer "
            "max_length"
        )
    if text_tokens is None:
        text_tokens = max(max_length - media_per_sample * num_queries, 1)
    if answer_tokens is None:
        answer_tokens = text_tokens  # worst case: every text token is a labelled answer token
    if not 0 <= answer_tokens <= text_tokens:
        raise ValueError(f"answer_tokens must be in [0, text_tokens={text_tokens}], got {answer_tokens}")
    used_vision_layers = int(model_cfg.get("visual_select_layer", -2)) % (vis_config.num_hidden_layers + 1)
    llm_lora = _lora_dict(model_cfg.get("llm_lora"))
    vis_lora = _lora_dict(model_cfg.get("visual_encoder_lora"))
    if checkpointing is None:
        checkpointing = bool(model_cfg.get("use_activation_checkpointing", True))
    return _Setup(
        gpus=gpus, zero=zero, offload=offload, device=device, checkpointing=checkpointing,
        amp=zero == 0 and "Amp" in str(cfg.optim_wrapper.get("type")),
        llm_config=llm_config, vis_config=vis_config, proj_config=proj_config, llm=llm, vision=vision,
        projector=projector, llm_source=llm_source, vis_source=vis_source,
        p_llm=dtype_bytes(llm_b.get("torch_dtype")), p_vis=dtype_bytes(vis_b.get("torch_dtype")),
        attn=llm_b.get("attn_implementation") or "sdpa", bits=bits, double_quant=double_quant,
        batch=int(batch_size or cfg.train_dataloader.batch_size),
        accum=int(cfg.optim_wrapper.get("accumulative_counts", 1) or 1),
        frames=int(frames or dataset.get("num_frames", 16)), media=media_per_sample, text_tokens=int(text_tokens),
        answer_tokens=int(answer_tokens),
        num_queries=num_queries, max_length=max_length, chunk=int(model_cfg.get("vision_chunk_size", 64)),
        loss_chunk=model_cfg.get("loss_chunk_size", DEFAULT_LOSS_CHUNK_SIZE),
        used_vision_layers=used_vision_layers, vision_trainable=not model_cfg.get("freeze_visual_encoder", True),
        llm_lora=llm_lora, vis_lora=vis_lora,
        llm_targets=lora_targets(llm, llm_lora, None) if llm_lora else [],
        vis_targets=lora_targets(vision, vis_lora, used_vision_layers) if vis_lora else [],
    )  # fmt: skip


def _parameters(s: _Setup, model_cfg: Any) -> dict[str, dict[str, int]]:
    n_llm, n_vis, n_proj = s.count(s.llm), s.count(s.vision), s.count(s.projector)
    llm_base = 0 if model_cfg.get("freeze_llm", True) else n_llm
    vis_base = 0 if model_cfg.get("freeze_visual_encoder", True) else n_vis
    return {
        "llm": {"total": n_llm + s.n_llm_lora, "trainable": llm_base + s.n_llm_lora, "lora": s.n_llm_lora},
        "visual_encoder": {"total": n_vis + s.n_vis_lora, "trainable": vis_base + s.n_vis_lora,
                           "lora": s.n_vis_lora},
        "projector": {"total": n_proj, "trainable": n_proj, "lora": 0},
    }  # fmt: skip


def _weight_rows(s: _Setup, params: dict[str, dict[str, int]]) -> tuple[list[Row], int]:
    """Weights per GPU (ZeRO-3 partitions them; with offload they live on the host). Returns rows, host bytes."""
    rows = []
    n_llm = params["llm"]["total"] - s.n_llm_lora
    n_vis = params["visual_encoder"]["total"] - s.n_vis_lora
    if s.bits:
        quantized = sum(m.weight.numel() for name, m in _linear_layers(s.llm) if name.split(".")[-1] != "lm_head")
        if s.bits == 4:
            per_param = 0.5 + ((1 + 4 / 256) / 64 if s.double_quant else 4 / 64)  # + absmax per 64-block
        else:
            per_param = 1 + 4 / 4096
        llm_bytes = int(quantized * per_param + (n_llm - quantized) * 4)
        llm_note = f"{s.bits}-bit linear layers ({quantized:,} params), the rest fp32 (prepare_model_for_kbit_training)"
    else:
        # VideoCCAMModel keeps trainable weights in fp32 (bf16 ones are upcast: there is no master copy without
        # DeepSpeed), so an unfrozen tower is fp32
        llm_elem = s.train_bytes or (max(s.p_llm, 4) if params["llm"]["trainable"] - s.n_llm_lora else s.p_llm)
        llm_bytes = n_llm * llm_elem
        llm_note = f"{n_llm / 1e9:.2f} B params x {llm_elem} B"
    vis_elem = s.train_bytes or (max(s.p_vis, 4) if params["visual_encoder"]["trainable"] - s.n_vis_lora else s.p_vis)
    proj_bytes = s.projector_param_bytes
    parts = [
        ("LLM (frozen)" if not params["llm"]["trainable"] - s.n_llm_lora else "LLM", llm_bytes, llm_note),
        ("LLM LoRA adapters (trainable)", s.n_llm_lora * s.adapter_bytes,
         f"r={s.llm_lora['r']} on {len(s.llm_targets)} linear layers, {s.adapter_bytes} B/param" if s.llm_lora else ""),
        ("SigLIP (frozen)" if not params["visual_encoder"]["trainable"] - s.n_vis_lora else "SigLIP",
         n_vis * vis_elem, f"{n_vis / 1e6:.0f} M params"),
        ("SigLIP LoRA adapters (trainable)", s.n_vis_lora * s.adapter_bytes,
         f"r={s.vis_lora['r']} on {len(s.vis_targets)} linear layers (layers < {s.used_vision_layers})"
         if s.vis_lora else ""),
        ("CCAM projector (trainable)", params["projector"]["total"] * proj_bytes,
         f"{params['projector']['total'] / 1e6:.1f} M params"),
    ]  # fmt: skip
    host = 0
    for item, size, note in parts:
        if not size:
            continue
        if s.zero == 3:
            size //= s.gpus
            note += f", /{s.gpus} (ZeRO-3)"
            if s.offload:
                host += size
                size, note = 0, note + ", offloaded to the host"
        rows.append(Row("weights", item, size, note))
    return rows, host


def _state_rows(s: _Setup, params: dict[str, dict[str, int]]) -> tuple[list[Row], int]:
    """Gradients, optimizer states and DeepSpeed's buffers per GPU. Returns rows, host bytes."""
    trainable = sum(p["trainable"] for p in params.values())
    if s.zero == 0:
        n_proj = params["projector"]["trainable"]
        grads = (trainable - n_proj) * s.adapter_bytes + n_proj * s.projector_param_bytes
        return [
            Row("training state", "gradients (trainable params, own dtype)", grads, "full copy per GPU"),
            Row("training state", "AdamW exp_avg + exp_avg_sq", 2 * grads,
                "in the parameters' dtype, no fp32 master (mmengine optimizer wrapper)"),
        ], 0
    # the project's JSONs sum gradients in fp32 (zero2_bf16: fp32 weights; zero3_bf16: grad_accum_dtype), and
    # DeepSpeed keeps an fp32 copy of each partition even of fp32 weights
    grads = trainable * 4 // (s.gpus if s.zero >= 2 else 1)
    opt = trainable * (4 + 8) // s.gpus
    host = 0
    grad_note, opt_note = f"{trainable / 1e6:.0f} M trainable", f"4 + 8 B/param /{s.gpus} GPUs"
    if s.offload:  # optimizer states and fp32 gradient partitions live on the host
        host += opt + trainable * 4 // s.gpus
        opt, opt_note = 0, "offloaded to the host"
        if s.zero >= 2:
            grads, grad_note = 0, "offloaded to the host"
    rows = [
        Row("training state", f"gradients (fp32{', partitioned' if s.zero >= 2 else ''})", grads, grad_note),
        Row("training state", "fp32 master + AdamW moments", opt, opt_note),
    ]
    if s.zero in (1, 2) and s.mode == "autocast":
        buckets = 2 * 2 * PROJECT_ZERO2_REDUCE_BUCKET * 4
        rows.append(Row("training state", "DeepSpeed gradient reduce buckets", buckets,
                        "2 communication dtypes x 2 buffers (overlap_comm) x reduce_bucket_size 2e8 x 4 B "
                        "(zero2_bf16.json), whatever the trainable count"))  # fmt: skip
    elif s.zero in (1, 2):
        rows.append(Row("training state", "DeepSpeed gradient reduce buckets", 2 * DS_REDUCE_BUCKET * 4,
                        "2 x reduce_bucket_size (5e8) x 4 B, whatever the trainable count"))
    else:
        tb = s.train_bytes
        gathered = (2 * _largest_block(s.llm) + DS_PREFETCH_BUCKET + min(DS_REDUCE_BUCKET, trainable)) * tb
        rows.append(Row("training state", "ZeRO-3 gathered layers + prefetch + reduce bucket", gathered,
                        "2 largest decoder layers + 5e7 prefetch + reduce bucket"))
    return rows, host


def _precisions(s: _Setup) -> tuple[Precision, Precision, Precision]:
    """Activation precisions of the LLM, SigLIP and the projector."""
    # Precision: DeepSpeed's fp32 and bf16 modes run everything in their dtype; otherwise (mmengine, DeepSpeed's
    # torch_autocast) each part runs in its loaded dtype, LoRA branches in fp32 (bf16 copies under autocast); a
    # 4-bit LLM's residual stream is fp32 (prepare_model_for_kbit_training upcasts embeddings and norms).
    mask = 1 if s.device == "cuda" else None  # CUDA dropout keeps a bool mask; CPU a mask in the tensor dtype
    if s.train_bytes:
        tb = s.train_bytes
        return Precision(tb, tb, mask or tb), Precision(tb, tb, mask or tb), Precision(tb, tb, mask or tb)
    lora_act = 2 if s.autocast else s.adapter_bytes
    # the fp32 projector computes in bf16 under autocast, in fp32 without
    proj_act = s.p_vis if s.autocast else s.projector_param_bytes
    return (
        Precision(4 if s.bits else s.p_llm, lora_act, mask or s.adapter_bytes),
        Precision(s.p_vis, lora_act, mask or s.adapter_bytes),
        Precision(proj_act, proj_act, mask or proj_act),
    )


def _llm_activations(s: _Setup, llm_prec: Precision) -> dict[str, Any]:
    """The LLM's saved activations, its backward working set, the causal mask and the answer logits."""
    cfg = s.llm_config
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    llm_arch = {
        "hidden": cfg.hidden_size,
        "q_width": cfg.num_attention_heads * head_dim,
        "kv_width": (getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads) * head_dim,
        "intermediate": cfg.intermediate_size,
    }
    lora_r = int(s.llm_lora["r"]) if s.llm_lora else 0
    lora_p = float(s.llm_lora.get("lora_dropout") or 0) if s.llm_lora else 0.0
    llm_layer = llm_layer_bytes(llm_arch, llm_prec, s.attn, [m.in_features for m in _layer0_linears(s.llm_targets)],
                                lora_r, lora_p)
    a, h, inter = llm_prec.act, llm_arch["hidden"], llm_arch["intermediate"]
    layers, tokens = cfg.num_hidden_layers, s.tokens
    if s.checkpointing:
        llm_saved, llm_recompute = layers * tokens * h * a, tokens * llm_layer
        llm_note = f"{layers} layer inputs x {tokens} tokens x {h} x {a} B"
    else:
        llm_saved, llm_recompute = layers * tokens * llm_layer, 0
        llm_note = f"{layers} layers x {tokens} tokens x {llm_layer:,} B/token"
    llm_saved += tokens * 4 * h  # the final RMSNorm's fp32 copy
    return {
        "act": a,
        "layer": llm_layer,
        "saved": llm_saved,
        "recompute": llm_recompute,
        "note": llm_note,
        "backward": tokens * a * (3 * h + 3 * inter),  # gradients of one layer's output, attention and MLP tensors
        "causal_mask": s.batch * s.tokens_per_sample**2 * a if s.attn == "sdpa" else 0,
        "logits": _loss_bytes(s, cfg.vocab_size, a),
    }


def _loss_bytes(s: _Setup, vocab: int, act: int) -> int:
    """Peak bytes of the loss over the answer positions (VideoCCAMModel builds logits for those only).

    Plain (``loss_chunk_size=None``): the fp32 log-softmax of every answer token kept for backward, then its
    gradient and the logits' gradient: 12 bytes per logit, plus the logits in the model dtype when it is not
    fp32. Chunked (``videoccam.model.chunked_loss``): the same per logit, for one chunk of answer tokens at a
    time (its recomputed logits, their log-softmax and both gradients). ``tools/bench_loss.py`` measured 12.0
    (plain) and 12.3 (chunked) bytes per logit on CPU in fp32.
    """
    extra = act if act != 4 else 0
    rows = s.batch * s.answer_tokens
    if s.loss_chunk:
        rows = min(int(s.loss_chunk), rows)
    return rows * vocab * (12 + extra)


def _vision_activations(s: _Setup, vis_prec: Precision) -> dict[str, Any]:
    """SigLIP's saved activations, its forward and recompute working sets, and the pixel values."""
    vcfg = s.vis_config
    c, v_inter, va = vcfg.hidden_size, vcfg.intermediate_size, vis_prec.act
    vis_grad = bool(s.n_vis_lora) or s.vision_trainable  # does a gradient flow into SigLIP?
    vis_r = int(s.vis_lora["r"]) if s.vis_lora else 0
    vis_p = float(s.vis_lora.get("lora_dropout") or 0) if s.vis_lora else 0.0
    vis_layer = vision_layer_bytes({"hidden": c, "intermediate": v_inter}, vis_prec,
                                   [m.in_features for m in _layer0_linears(s.vis_targets)], vis_r, vis_p)
    frame_tokens = s.total_frames * s.patches
    chunk_tokens = min(s.chunk, s.total_frames) * s.patches
    features = frame_tokens * c * va  # the selected layer's output (or the projector's padded copy of it)
    if vis_grad and s.checkpointing:
        vis_saved = s.used_vision_layers * frame_tokens * c * va + features
        vis_note = f"{s.used_vision_layers} layer inputs x {s.total_frames} frames x {s.patches} patches"
        vis_recompute = chunk_tokens * vis_layer
    elif vis_grad:
        vis_saved = s.used_vision_layers * frame_tokens * vis_layer + features
        vis_note = f"{s.used_vision_layers} layers x {s.total_frames} frames x {s.patches} patches x {vis_layer:,} B"
        vis_recompute = 0
    else:
        vis_saved, vis_recompute = features, 0
        vis_note = "no gradient reaches SigLIP: only the selected features"
    pixels = s.total_frames * 3 * s.image_size**2
    return {
        "grad": vis_grad,
        "layer": vis_layer,
        "saved": vis_saved,
        "recompute": vis_recompute,
        "note": vis_note,
        # the last chunk's forward keeps every hidden state (output_hidden_states) and one layer's work
        "forward": chunk_tokens * va * ((vcfg.num_hidden_layers + 1) * c + 4 * c + v_inter) + features,
        "pixel_values": pixels,  # the collated uint8 batch lives through the step (the model normalises it)
        "pixel_cast": pixels * 4 + (pixels * va if va != 4 else 0),  # fp32 normalised copy, its .to(dtype) copy
    }


def _loss_note(s: _Setup) -> str:
    rows = s.batch * s.answer_tokens
    if s.loss_chunk:
        return (f"chunks of {min(int(s.loss_chunk), rows)} of the {s.batch} x {s.answer_tokens} answer tokens x "
                f"{s.llm_config.vocab_size} vocab")
    return f"{s.batch} x {s.answer_tokens} answer tokens x {s.llm_config.vocab_size} vocab, all at once"


def _activation_rows(s: _Setup) -> tuple[list[Row], dict[str, Any]]:
    """Activations kept for backward plus the peak working memory of the step (see the module docstring)."""
    llm_prec, vis_prec, proj_prec = _precisions(s)
    llm, vis = _llm_activations(s, llm_prec), _vision_activations(s, vis_prec)
    autocast_copies = (s.n_llm_lora + s.n_vis_lora) * 2 if s.autocast and s.adapter_bytes == 4 else 0
    proj = projector_bytes(s.proj_config.to_dict(), s.videos, s.frames, s.patches, proj_prec, s.device,
                           s.checkpointing)
    logits, pixel_values = llm["logits"], vis["pixel_values"]

    saved = llm["saved"] + llm["causal_mask"] + vis["saved"] + proj["saved"] + pixel_values + autocast_copies
    phases = {
        "vision forward": pixel_values + vis["pixel_cast"] + vis["forward"] + (vis["saved"] if vis["grad"] else 0),
        "loss (logits)": saved + logits,
        "backward (one LLM layer)": saved + llm["recompute"] + llm["backward"],
        "backward (projector, SigLIP)": saved + proj["recompute"] + vis["recompute"],
    }
    peak_phase = max(phases, key=phases.get)
    rows = [Row("activations", "LLM: " + ("checkpointed layer inputs" if s.checkpointing else "all layers"),
                llm["saved"], llm["note"])]
    if llm["causal_mask"]:
        rows.append(Row("activations", "LLM: 4-D causal mask (sdpa, padded batch)", llm["causal_mask"],
                        f"{s.batch} x {s.tokens_per_sample}^2 x {llm['act']} B"))
    if autocast_copies:
        rows.append(Row("activations", "autocast bf16 copies of fp32 adapters", autocast_copies, ""))
    rows += [
        Row("activations", "SigLIP", vis["saved"], vis["note"]),
        Row("activations", "CCAM projector", proj["saved"],
            f"{s.videos} video(s): {s.num_queries} queries x {s.frames * s.patches} keys"),
        Row("activations", "inputs (pixel values, uint8)", pixel_values, f"{s.total_frames} frames"),
        Row("activations", f"peak working memory: {peak_phase}", max(phases[peak_phase] - saved, 0),
            f"loss {logits / GIB:.2f} GiB ({_loss_note(s)}); one LLM layer "
            f"{(llm['recompute'] + llm['backward']) / GIB:.2f} GiB"),
    ]  # fmt: skip
    facts = {
        "peak_phase": peak_phase,
        "phases_bytes": phases,
        "llm_layer_bytes_per_token": llm["layer"],
        "vision_layer_bytes_per_token": vis["layer"],
        "logits_bytes": logits,
    }
    return rows, facts


def plan_memory(
    cfg: Any,
    gpus: int,
    zero: int,
    offload: bool = False,
    batch_size: int | None = None,
    frames: int | None = None,
    text_tokens: int | None = None,
    media_per_sample: int = 1,
    answer_tokens: int | None = None,
    checkpointing: bool | None = None,
    device: str = "cuda",
    overhead_gib: float | None = None,
    arch_source: str = "auto",
    config_name: str = "",
) -> MemoryPlan:
    """Estimate per-GPU training memory of an mmengine config (see the module docstring for the model).

    Args:
        cfg: the loaded config (``mmengine.Config``).
        gpus: data-parallel GPUs (ZeRO partitions over them).
        zero: 0 (no DeepSpeed: mmengine optimizer wrapper) or the DeepSpeed ZeRO stage 1-3.
        offload: DeepSpeed CPU offload of optimizer states (and parameters, with ZeRO-3).
        batch_size: per-device micro-batch (default: ``train_dataloader.batch_size``).
        frames: frames per video (default: the dataset's ``num_frames``).
        text_tokens: text tokens per sample (default: the whole text budget, ``max_length`` minus the visual
            tokens: the worst case a batch of long samples reaches).
        media_per_sample: images/videos per sample (0 for text-only).
        answer_tokens: labelled (answer) tokens per sample, the only positions whose logits are built
            (default: ``text_tokens``, the worst case).
        checkpointing: activation checkpointing (default: the model's ``use_activation_checkpointing``).
        device: ``cuda`` or ``cpu`` kernel assumptions (see module docstring).
        overhead_gib: fixed runtime allowance (default 2 GiB on cuda, 0 on cpu).
        arch_source: ``auto``, ``config`` or ``table`` (see :func:`load_architecture`).
        config_name: shown in the report.

    Raises:
        ValueError: an unsupported combination or a config without the needed fields.
    """
    s = _read_setup(cfg, gpus, zero, offload, batch_size, frames, text_tokens, media_per_sample, checkpointing,
                    device, arch_source, answer_tokens)
    params = _parameters(s, cfg.model)
    weight_rows, weight_host = _weight_rows(s, params)
    state_rows, state_host = _state_rows(s, params)
    activation_rows, activation_facts = _activation_rows(s)
    rows = weight_rows + state_rows + activation_rows
    if overhead_gib is None:
        overhead_gib = DEFAULT_CUDA_OVERHEAD_GIB if device == "cuda" else 0.0
    if overhead_gib:
        rows.append(Row("runtime", "CUDA context, NCCL, allocator reserve", int(overhead_gib * GIB),
                        "--overhead-gib"))
    facts = {
        "config": config_name,
        "gpus": gpus,
        "mode": (f"DeepSpeed ZeRO-{zero}" + (" + offload" if offload else "")) if zero else "no DeepSpeed (mmengine)",
        "weights": s.mode,
        "zero": zero,
        "offload": offload,
        "batch_size": s.batch,
        "accumulative_counts": s.accum,
        "global_batch": s.batch * s.accum * gpus,
        "checkpointing": s.checkpointing,
        "device": device,
        "frames": s.frames,
        "patches_per_frame": s.patches,
        "num_queries": s.num_queries,
        "media_per_sample": s.media,
        "visual_tokens_per_sample": s.visual_tokens,
        "text_tokens": s.text_tokens,
        "answer_tokens": s.answer_tokens,
        "tokens_per_sample": s.tokens_per_sample,
        "max_length": s.max_length,
        "tokens_per_micro_batch": s.tokens,
        "tokens_per_step": s.tokens * s.accum * gpus,
        "frames_per_micro_batch": s.total_frames,
        "llm_source": s.llm_source,
        "vision_source": s.vis_source,
        **activation_facts,
    }
    return MemoryPlan(rows, facts, params, sum(r.bytes for r in rows), weight_host + state_host)


def plan_to_json(plan: MemoryPlan) -> str:
    return json.dumps(plan.to_dict(), indent=2, default=str)


__all__ = [
    "BUILTIN_ARCHITECTURES",
    "MemoryPlan",
    "Row",
    "build_skeleton",
    "dtype_bytes",
    "llm_layer_bytes",
    "load_architecture",
    "lora_targets",
    "plan_memory",
    "plan_to_json",
    "projector_bytes",
    "vision_layer_bytes",
]
