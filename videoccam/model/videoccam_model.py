"""VideoCCAMModel: the Video-CCAM model as an mmengine/xtuner training model.

Built like xtuner's ``LLaVAModel`` (same builder dicts, freezing, LoRA, activation checkpointing, trainable-only
checkpoints, ``to_hf`` for ``xtuner convert pth_to_hf``) with the differences Video-CCAM needs:

* the projector is the CCAM projector (fixed ``num_queries`` tokens per image or video, causal over frames);
* vision features are ``hidden_states[visual_select_layer]`` with **all** tokens (xtuner slices ``[:, 1:]``,
  which drops a real SigLIP patch), computed in chunks of ``vision_chunk_size`` frames;
* a batch may mix videos of any frame count, images (1 frame) and text-only samples;
* the media are spliced with :func:`~videoccam.model.hf.modeling_videoccam.splice_media_embeds`, the same code the
  exported Hugging Face model runs, so training and inference see identical LLM inputs;
* in training mode the vision tower and projector run on every step even for a text-only batch (a dummy frame
  whose output is added with weight 0), so DDP and DeepSpeed ZeRO-3 ranks never disagree on which parameters
  took part;
* LoRA on a non-quantised LLM does not go through ``prepare_model_for_kbit_training`` (which would upcast a
  bf16 LLM to fp32); it is used only when the LLM is loaded in 4/8 bit;
* trainable weights (projector, LoRA adapters, unfrozen towers) are fp32 even when the towers are bf16:
  without DeepSpeed nothing keeps fp32 master copies; under a DeepSpeed config with bf16 / fp16 enabled they are
  in that dtype instead, since DeepSpeed keeps the fp32 masters (:meth:`VideoCCAMModel._set_trainable_dtypes`);
* the LLM's attention is transformers' own (``attn_implementation``): xtuner's ``dispatch_modules`` is not called,
  as its flash-attn forwards need a process group even in a single process;
* ``data["visual_features"]`` (a stage-1 feature cache, ``videoccam.dataset.feature_cache``) replaces the
  vision tower's output for the batch;
* ``pixel_values`` may be uint8 (resized frames from the dataset, with their ``pixel_affine``): they are
  normalised here, on the model's device (:func:`normalize_pixels`), so DataLoader workers move a quarter of the
  bytes and do no float work;
* with ``data["loss_divisor"]`` the loss is the summed token loss divided by it (set by
  ``videoccam.engine.loops.TokenMeanTrainLoop`` for a per-token mean over a whole optimizer step).

Notation: b samples, l tokens, f frames (all media of the batch), m media items, q queries, d_l LLM width.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any, Mapping

import torch
import torch.distributed as dist
from mmengine.config import Config, ConfigDict
from mmengine.logging import print_log
from mmengine.model import BaseModel
from peft import get_peft_model, prepare_model_for_kbit_training
from torch import nn
from xtuner.model.utils import LoadWoInit, find_all_linear_names
from xtuner.registry import BUILDER

from videoccam.checkpoint import load_checkpoint, resolve_checkpoint, weights_only_loading
from videoccam.model.chunked_loss import DEFAULT_LOSS_CHUNK_SIZE, chunked_head_cross_entropy, num_loss_chunks
from videoccam.model.gpu_options import check_gpu_only_options
from videoccam.model.hf.ccam_projector import CCAMProjector, CCAMProjectorConfig
from videoccam.model.hf.constants import IGNORE_INDEX
from videoccam.model.hf.modeling_videoccam import encode_frames, splice_media_embeds


def normalize_pixels(pixel_values: torch.Tensor, affine: torch.Tensor | None) -> torch.Tensor:
    """uint8 frames ``[f, 3, h, w]`` to float32 model input: ``x * scale + offset`` per channel, in float32.

    ``affine`` is the dataset's ``pixel_affine`` ([2, 3]: scale, offset; ``BatchFrameProcessor.affine``), so the
    result equals what ``BatchFrameProcessor.normalize`` (and the image processor) gives, on any device.

    Raises:
        ValueError: without ``affine`` (uint8 frames need the normalisation they came with).
    """
    if affine is None:
        raise ValueError(
            "pixel_values are uint8 but the batch has no pixel_affine: uint8 frames come from VideoCCAMDataset "
            "(normalize_in_model=True) through videoccam_collate_fn, which adds it; pass normalised float frames "
            "otherwise"
        )
    affine = affine.to(device=pixel_values.device, dtype=torch.float32)
    out = pixel_values.to(torch.float32)
    return out.mul_(affine[0].view(1, 3, 1, 1)).add_(affine[1].view(1, 3, 1, 1))


def deepspeed_compute_dtype() -> torch.dtype | None:
    """bf16 / fp16 when a DeepSpeed config with that mode enabled is registered for this process, else None.

    xtuner's ``DeepSpeedStrategy`` registers its config (transformers' ``HfDeepSpeedConfig``, which also makes
    ``from_pretrained`` build under ``zero.Init`` for ZeRO-3) before it builds the model, so the model can see
    here what DeepSpeed will train in. None without DeepSpeed, and for fp32 or ``torch_autocast`` configs
    (``configs/deepspeed/zero2_bf16.json``: fp32 weights, bf16 compute under autocast).
    """
    try:
        from transformers.integrations.deepspeed import deepspeed_config
    except ImportError:  # a transformers without the integration: no DeepSpeed config can be registered
        return None
    config = deepspeed_config() or {}
    for key, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        section = config.get(key)
        if isinstance(section, Mapping) and section.get("enabled") is True:
            return dtype
    return None


def _build(cfg_or_module: Any) -> Any:
    """Build a builder dict; nested builder dicts (e.g. ``quantization_config=dict(type=BitsAndBytesConfig,
    ...)``) are built first. Nested dicts whose ``type`` is a string (``rope_scaling``) are left alone.
    ``"torch.bfloat16"``-style strings (what a dumped config holds) become dtypes, as in xtuner's builder."""
    if isinstance(cfg_or_module, (dict, Config, ConfigDict)):
        cfg = {key: value for key, value in cfg_or_module.items()}
        for key, value in cfg.items():
            if key != "type" and isinstance(value, (dict, ConfigDict)) and callable(value.get("type")):
                cfg[key] = _build(value)
            elif isinstance(value, str) and value.startswith("torch.") and isinstance(
                getattr(torch, value[len("torch."):], None), torch.dtype
            ):
                cfg[key] = getattr(torch, value[len("torch."):])
        return BUILDER.build(cfg)
    return cfg_or_module


def _loaded_adapters(module: nn.Module, new_lora: Any, name: str) -> list[nn.Parameter]:
    """The trainable tensors of the adapters ``module`` was loaded with (a ``peft.PeftModel``), else [].

    Raises:
        ValueError: if ``module`` carries adapters and new ones (``new_lora``) were asked for as well.
    """
    from peft import PeftModel

    if not isinstance(module, PeftModel):
        return []
    if new_lora is not None:
        raise ValueError(
            f"model.{name} already carries PEFT adapters (e.g. a released Video-CCAM {name} adapter), which train "
            f"further; set model.{name}_lora=None instead of adding new ones"
        )
    return [p for p in module.parameters() if p.requires_grad]


class VideoCCAMModel(BaseModel):
    """Trainable Video-CCAM for ``xtuner train``.

    Args:
        llm: causal LM module or builder dict (``dict(type=AutoModelForCausalLM.from_pretrained, ...)``).
        visual_encoder: vision tower module or builder dict (``SiglipVisionModel.from_pretrained``).
        projector: a :class:`CCAMProjector` or another projector module called as ``projector(features,
            split_sizes)`` (a released one, through its own code), a builder dict with ``type``, or a dict of
            :class:`CCAMProjectorConfig` fields; ``cross_hidden_size`` / ``output_size`` left out (or None) are
            taken from the vision tower / LLM widths.
        freeze_llm, freeze_visual_encoder: freeze the full weights (LoRA adapters still train).
        visual_select_layer: ``hidden_states`` index used as projector input.
        vision_chunk_size: frames per vision forward.
        llm_lora, visual_encoder_lora: ``peft.LoraConfig`` or builder dicts; ``target_modules=None`` means all
            linear layers except the output head. A tower that comes wrapped in a ``peft.PeftModel`` (a released
            model's adapters, :mod:`videoccam.model.released`) keeps training its own adapters; give no new ones.
        use_activation_checkpointing: gradient checkpointing in LLM, vision tower and projector.
        pretrained_pth: a checkpoint of an earlier stage (mmengine ``.pth`` file or DeepSpeed folder) whose
            trainable weights are loaded; every key in it must exist in this model.
        loss_chunk_size: answer tokens per LM-head call of the loss (``videoccam.model.chunked_loss``: each
            chunk's logits are recomputed in backward, so the loss never holds ``[answer tokens, vocab]`` logits);
            None computes all answer tokens' logits at once.
    """

    def __init__(
        self,
        llm: Any,
        visual_encoder: Any,
        projector: Any,
        freeze_llm: bool = True,
        freeze_visual_encoder: bool = True,
        visual_select_layer: int = -2,
        vision_chunk_size: int = 64,
        llm_lora: Any = None,
        visual_encoder_lora: Any = None,
        use_activation_checkpointing: bool = True,
        pretrained_pth: str | None = None,
        loss_chunk_size: int | None = DEFAULT_LOSS_CHUNK_SIZE,
    ) -> None:
        super().__init__()
        if vision_chunk_size < 1:
            raise ValueError(f"vision_chunk_size must be >= 1, got {vision_chunk_size}")
        if loss_chunk_size is not None and loss_chunk_size < 1:
            raise ValueError(f"loss_chunk_size must be None or >= 1, got {loss_chunk_size}")
        self.loss_chunk_size = loss_chunk_size
        # QLoRA / flash-attention on a machine without CUDA: fail here, before any weights are loaded
        check_gpu_only_options(llm, "model.llm")
        check_gpu_only_options(visual_encoder, "model.visual_encoder")
        with LoadWoInit():
            self.llm = _build(llm)
            self.visual_encoder = _build(visual_encoder)
        self.llm.config.use_cache = False
        # No xtuner dispatch_modules: where flash-attn is installed it swaps the LLM's attention forwards for
        # xtuner's varlen / sequence-parallel versions, which call dist.get_rank() on every step and so kill a
        # single-process run ("Default process group has not been initialized"). This model uses neither: the
        # attention is transformers' own, chosen by the builder's attn_implementation (sdpa, flash_attention_2).
        self.freeze_llm = freeze_llm
        self.freeze_visual_encoder = freeze_visual_encoder
        self.visual_select_layer = visual_select_layer
        self.vision_chunk_size = vision_chunk_size
        self.projector = self._build_projector(projector)
        vision_dtype = self.visual_encoder.dtype  # as loaded, before any upcast

        # towers that come with trained adapters (a released v1.0 model: videoccam.model.released) keep training
        # those; PEFT decided which of their tensors train when it loaded them
        llm_adapters = _loaded_adapters(self.llm, llm_lora, "llm")
        vision_adapters = _loaded_adapters(self.visual_encoder, visual_encoder_lora, "visual_encoder")
        if freeze_llm:
            self.llm.requires_grad_(False)
        if freeze_visual_encoder:
            self.visual_encoder.requires_grad_(False)
        for param in llm_adapters + vision_adapters:
            param.requires_grad_(True)
        if vision_adapters:
            self._freeze_unused_vision_adapters()

        self.use_llm_lora = llm_lora is not None or bool(llm_adapters)
        self.use_visual_encoder_lora = visual_encoder_lora is not None or bool(vision_adapters)
        if llm_lora is not None:
            self.llm = self._add_lora(self.llm, llm_lora, use_activation_checkpointing)
        if visual_encoder_lora is not None:
            self.visual_encoder = self._add_lora(
                self.visual_encoder, visual_encoder_lora, False, used_layers=self._used_vision_layers()
            )
        # before pretrained_pth, so fp32 weights of an earlier stage are loaded without rounding
        self.weight_dtypes = self._set_trainable_dtypes(projector_dtype=vision_dtype)
        if use_activation_checkpointing:
            self.activation_checkpointing_enable()
        if pretrained_pth is not None:
            if any(p.is_meta for p in self.projector.parameters()):
                # `xtuner convert pth_to_hf` builds the model on the meta device and then loads the converted
                # checkpoint, which holds every trainable tensor: the earlier stage's weights are not needed
                print_log(f"meta-device build: not loading pretrained_pth={pretrained_pth}", "current")
            else:
                self.load_pretrained(pretrained_pth)
        self._is_init = True

    # -- construction ---------------------------------------------------------------------------------
    def _build_projector(self, projector: Any) -> CCAMProjector:
        if isinstance(projector, nn.Module):
            module = projector
        elif isinstance(projector, (dict, Config, ConfigDict)) and "type" in projector:
            module = BUILDER.build(projector)
        elif isinstance(projector, (dict, Config, ConfigDict)):
            fields = dict(projector)
            if fields.get("cross_hidden_size") is None:
                fields["cross_hidden_size"] = self.visual_encoder.config.hidden_size
            if fields.get("output_size") is None:
                fields["output_size"] = self.llm.config.hidden_size
            module = CCAMProjector(CCAMProjectorConfig(**fields))
        else:
            raise TypeError(f"projector must be a module, a builder dict or a dict of config fields, got {projector!r}")
        vision_width = self.visual_encoder.config.hidden_size
        llm_width = self.llm.config.hidden_size
        # visual tokens per image or video (None: a foreign projector under ZeRO-3, not called before training)
        self.num_visual_tokens: int | None = getattr(getattr(module, "config", None), "num_queries", None)
        if not isinstance(module, CCAMProjector):
            self.num_visual_tokens = self._check_projector_call(module, llm_width)  # e.g. a released projector
        elif module.config.cross_hidden_size != vision_width or module.config.output_size != llm_width:
            raise ValueError(
                f"projector cross_hidden_size={module.config.cross_hidden_size} / output_size="
                f"{module.config.output_size} do not match the vision width {vision_width} / LLM width {llm_width}"
            )
        return module  # its dtype is set by _set_trainable_dtypes

    def _check_projector_call(self, projector: nn.Module, llm_width: int) -> int | None:
        """A projector of another code base must map ``projector(features [f, p, d_v], [f])`` to ``[1, q, d_l]``.

        That is how upstream Video-CCAM calls its projector (design.md section 8); one frame of zero features
        (shaped as the vision tower's config says: ``(image_size / patch_size)^2`` tokens of its width) checks it
        here, before training, with a message that names the shapes. The vision tower is not run: at this point
        it sits on the CPU, where e.g. a flash-attention tower cannot run. Skipped for weights partitioned by
        ZeRO-3.

        Returns:
            q, the visual tokens per item (None when skipped).
        """
        if any(hasattr(p, "ds_id") or p.is_meta for p in projector.parameters()):
            return None
        vision = self.visual_encoder.config
        image_size, patch_size = getattr(vision, "image_size", None), getattr(vision, "patch_size", None)
        patches = (image_size // patch_size) ** 2 if image_size and patch_size else 1
        param = next(projector.parameters())
        features = torch.zeros(1, patches, vision.hidden_size, dtype=param.dtype, device=param.device)
        with torch.no_grad():
            try:
                out = projector(features, [1])
            except Exception as e:  # noqa: BLE001 - any failure of foreign code: say how it was called
                raise ValueError(
                    f"the projector {type(projector).__name__} failed when called as projector(features, "
                    f"split_sizes) with features of shape {tuple(features.shape)} and split_sizes [1] (how Video-CCAM "
                    f"calls its projector): {type(e).__name__}: {e}"
                ) from e
        shape = tuple(out[0].shape) if isinstance(out, (list, tuple)) else tuple(out.shape)[1:]
        if len(shape) != 2 or shape[-1] != llm_width:
            raise ValueError(
                f"the projector {type(projector).__name__} returned {shape} per item for one frame; expected "
                f"[num_queries, {llm_width}] (the LLM width)"
            )
        return shape[0]

    def _freeze_unused_vision_adapters(self) -> None:
        """Freeze loaded vision-tower adapters whose output never reaches ``hidden_states[visual_select_layer]``.

        A released SigLIP adapter covers every layer (and the pooling head); the layers after the selected one
        get no gradient, which DDP rejects as unused parameters. One frame's forward and backward, traced on the
        ``meta`` device (:func:`torch.func.functional_call` with meta copies of the weights: shapes only, no
        memory, no kernels), finds them: the tower itself stays where it is (on the CPU at this point) and never
        runs there, so a tower built for the GPU (flash-attention 2) starts up too.

        Raises:
            RuntimeError: if the tower cannot be traced on the meta device (an attention kernel without a meta
                implementation, e.g. flash-attn older than 2.6): load it with ``attn_implementation="sdpa"``.
        """
        tower = self.visual_encoder
        trainable = [name for name, p in tower.named_parameters() if p.requires_grad]
        if not trainable or any(hasattr(p, "ds_id") or p.is_meta for p in tower.parameters()):
            return
        meta = {name: torch.empty_like(p, device="meta").requires_grad_(p.requires_grad)
                for name, p in tower.named_parameters()}  # fmt: skip
        meta.update((name, torch.empty_like(b, device="meta")) for name, b in tower.named_buffers())
        size = tower.config.image_size
        frame = torch.zeros(1, 3, size, size, dtype=next(tower.parameters()).dtype, device="meta")
        try:
            with torch.enable_grad():
                out = torch.func.functional_call(tower, meta, (frame,), {"output_hidden_states": True})
                features = out.hidden_states[self.visual_select_layer]
                grads = torch.autograd.grad(features.float().sum(), [meta[n] for n in trainable], allow_unused=True)
        except Exception as e:  # noqa: BLE001 - foreign kernels: say what to change
            raise RuntimeError(
                f"could not trace the vision tower {type(tower).__name__} on the meta device to find which of its "
                f"loaded adapters reach hidden_states[{self.visual_select_layer}] ({type(e).__name__}: {e}); load it "
                "with attn_implementation='sdpa' (model.visual_encoder.attn_implementation=sdpa)"
            ) from e
        unused = [name for name, grad in zip(trainable, grads) if grad is None]
        params = dict(tower.named_parameters())
        for name in unused:
            params[name].requires_grad_(False)
        if unused:
            print_log(f"visual encoder: froze {len(unused)} loaded adapter tensors whose output does not reach "
                      f"hidden_states[{self.visual_select_layer}]", "current")  # fmt: skip

    def _set_trainable_dtypes(self, projector_dtype: torch.dtype) -> dict[str, torch.dtype]:
        """Put every trainable weight in the dtype it trains in; returns {name: its storage dtype as loaded}.

        Without DeepSpeed (or with an fp32 / autocast DeepSpeed config) trainable weights are float32 when their
        tower is bf16/fp16: AdamW updates of a bf16 weight are rounded to bf16 in place, so an update smaller than
        half a bf16 step (2**-9 relative; lr 2e-5 on a LayerNorm weight of 1.0) is lost, every step. mmengine's
        ``AmpOptimWrapper`` keeps no master copy (it only autocasts the forward pass) and neither does a plain
        ``OptimWrapper``, so the trainable weights themselves are fp32, as torch AMP expects (fp32 parameters,
        low-precision compute under autocast). Frozen weights stay as loaded. LoRA adapters are fp32 already
        (peft's ``autocast_adapter_dtype``); fully unfrozen bf16 towers become fp32. Module boundaries cast
        their inputs (the projector to its own dtype, the splice to the LLM embeddings' dtype, peft's LoRA
        layers to the adapter's dtype), so the forward runs with and without autocast.

        Under a DeepSpeed config with ``bf16`` (or ``fp16``) enabled (:func:`deepspeed_compute_dtype`), DeepSpeed
        keeps fp32 master copies in its optimizer and there is no autocast: the trainable weights are stored in
        that dtype, so the projector and the LoRA adapters compute in it. ZeRO-1/2 would cast them itself, but
        ZeRO-3 does not cast a model whose weights were built under ``zero.Init`` (measured with deepspeed
        0.19.6: fp32 projector and LoRA matrix products otherwise); weights already partitioned (``ds_id``) are
        left to DeepSpeed.

        The returned storage dtypes are what the weights were loaded in (for the projector: ``projector_dtype``,
        the vision tower's); exports round the trained weights back to them unless another dtype is asked for
        (``export.loaded_dtype_state``).
        """
        low_precision = (torch.bfloat16, torch.float16)
        train_dtype = deepspeed_compute_dtype() or torch.float32
        storage: dict[str, torch.dtype] = {}
        if projector_dtype in low_precision:
            self.projector.to(train_dtype)
            storage.update((f"projector.{n}", projector_dtype) for n, _ in self.projector.named_parameters())
        else:
            self.projector.to(projector_dtype)  # an fp32 (or fp64) vision tower: the projector computes in it
        loaded: dict[int, torch.dtype] = {}  # by parameter identity: tied weights appear under several names
        for name, param in self.named_parameters(remove_duplicate=False):
            if not param.requires_grad or hasattr(param, "ds_id") or name in storage:
                continue
            if id(param) not in loaded and param.is_floating_point() and param.dtype != train_dtype:
                if param.dtype in low_precision or train_dtype in low_precision:
                    loaded[id(param)] = param.dtype
                    param.data = param.data.to(train_dtype)
            if id(param) in loaded:
                storage[name] = loaded[id(param)]
        return storage

    def _used_vision_layers(self) -> int:
        """How many encoder layers feed ``hidden_states[visual_select_layer]`` (entry 0 is the embeddings)."""
        num_layers = self.visual_encoder.config.num_hidden_layers
        index = self.visual_select_layer % (num_layers + 1)
        return index

    @staticmethod
    def _add_lora(
        model: nn.Module, lora_config: Any, use_activation_checkpointing: bool, used_layers: int | None = None
    ) -> nn.Module:
        """Wrap ``model`` with LoRA. ``target_modules=None`` = every linear layer but the output head.

        For the vision tower, ``used_layers`` limits adapters to the encoder layers whose output reaches the
        projector: adapters after ``visual_select_layer`` (and in the pooling head) would never get a gradient,
        which wastes memory and makes DDP fail on unused parameters.
        """
        lora_config = _build(lora_config)
        if getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False):
            model = prepare_model_for_kbit_training(model, use_activation_checkpointing)
        if lora_config.target_modules is None:
            lora_config.target_modules = find_all_linear_names(model)
        if used_layers is not None and lora_config.layers_to_transform is None:
            lora_config.layers_to_transform = list(range(used_layers))
            lora_config.layers_pattern = lora_config.layers_pattern or "layers"
        return get_peft_model(model, lora_config)

    def load_pretrained(self, path: str) -> None:
        """Load the trainable weights saved by an earlier stage; unknown keys are an error, not ignored.

        ``path`` is an mmengine ``.pth`` file, a DeepSpeed checkpoint folder, or a work dir whose
        ``last_checkpoint`` file names the checkpoint (:func:`videoccam.checkpoint.resolve_checkpoint`; a work dir
        without a checkpoint raises :class:`~videoccam.checkpoint.NoCheckpointError`, a FileNotFoundError naming
        the failed run's log). Every file is read weights-only (:mod:`videoccam.checkpoint`): a file that would run
        code is refused with :class:`~videoccam.checkpoint.UnsafeCheckpointError` (a ValueError), nothing of it
        loaded.
        """
        path = resolve_checkpoint(path)
        if os.path.isdir(path):
            # a DeepSpeed checkpoint folder: rebuild the fp32 master weights from the ZeRO shards (xtuner's
            # guess_load_checkpoint would round them to float16 first); xtuner's reader passes weights_only=False
            try:
                from xtuner.utils.zero_to_any_dtype import get_state_dict_from_zero_checkpoint
            except ImportError as e:
                raise ImportError(
                    f"{path} is a DeepSpeed checkpoint folder; reading it needs deepspeed "
                    "(bash tools/install.sh deepspeed, or pip install 'deepspeed>=0.16.2,<0.19.7')"
                ) from e

            path = os.path.normpath(path)
            with weights_only_loading():
                state_dict = get_state_dict_from_zero_checkpoint(
                    os.path.dirname(path), os.path.basename(path), dtype=torch.float32
                )
        else:
            state_dict = load_checkpoint(path)
            if "state_dict" in state_dict:  # an mmengine checkpoint; else a plain state dict
                state_dict = state_dict["state_dict"]
        own = set(super().state_dict().keys())
        unknown = [k for k in state_dict if k not in own]
        if unknown:
            raise ValueError(
                f"{len(unknown)} weights in {path} have no place in this model (first: {unknown[:3]}); "
                "was it trained with a different LoRA / freezing setup or another model?"
            )
        # weights built under DeepSpeed ZeRO-3 (transformers' from_pretrained inside zero.Init) are partitioned
        # placeholders here: gather each, let rank 0 write it, and re-partition
        partitioned = {name: p for name, p in self.named_parameters() if name in state_dict and hasattr(p, "ds_id")}
        if partitioned:
            import deepspeed

            with deepspeed.zero.GatheredParameters(list(partitioned.values()), modifier_rank=0):
                if not dist.is_initialized() or dist.get_rank() == 0:
                    with torch.no_grad():
                        for name, param in partitioned.items():
                            param.copy_(state_dict[name])
            state_dict = {k: v for k, v in state_dict.items() if k not in partitioned}
        self.load_state_dict(state_dict, strict=False)
        print_log(f"loaded {len(state_dict) + len(partitioned)} tensors from {path}", "current")

    # -- checkpointing / state ------------------------------------------------------------------------
    def _checkpointable(self) -> list[nn.Module]:
        # a released projector's own code may not support gradient checkpointing: it then runs without
        return [m for m in (self.llm, self.visual_encoder, self.projector)
                if getattr(m, "supports_gradient_checkpointing", True)]  # fmt: skip

    def activation_checkpointing_enable(self) -> None:
        kwargs = {"gradient_checkpointing_kwargs": {"use_reentrant": False}}
        for module in self._checkpointable():
            module.gradient_checkpointing_enable(**kwargs)

    gradient_checkpointing_enable = activation_checkpointing_enable

    def activation_checkpointing_disable(self) -> None:
        for module in self._checkpointable():
            module.gradient_checkpointing_disable()

    gradient_checkpointing_disable = activation_checkpointing_disable

    def init_weights(self) -> None:
        """Weights come from the pretrained parts; mmengine must not re-initialise them."""

    def trainable_parameter_names(self) -> list[str]:
        return [name for name, p in self.named_parameters() if p.requires_grad]

    def state_dict(self, *args: Any, **kwargs: Any) -> "OrderedDict[str, torch.Tensor]":
        """Only the trainable tensors (projector, LoRA adapters, and any unfrozen full weights)."""
        full = super().state_dict(*args, **kwargs)
        prefix = kwargs.get("prefix", "")
        trainable = {prefix + name for name in self.trainable_parameter_names()}
        return OrderedDict((k, v) for k, v in full.items() if k in trainable)

    # -- forward ----------------------------------------------------------------------------------------
    def _zero3_lockstep(self) -> bool:
        """True when DeepSpeed ZeRO-3 partitions the weights over more than one rank.

        Then every module call all-gathers that module's weights, a collective, so every rank must call every
        submodule the same number of times in the same order on every step, whatever its batch holds; a rank
        that runs the vision tower once while another runs it twice hangs both (or, worse, pairs the wrong
        collectives).
        """
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
            return False
        return hasattr(next(self.visual_encoder.parameters()), "ds_id")

    def _media_embeds(self, data: Mapping[str, Any]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Returns (media embeddings [m, q, d_l] or None, a zero-valued term keeping the towers in the graph).

        Text-only batches run the vision tower and projector on one dummy frame in training mode (so DDP sees a
        gradient for every trainable weight). Under ZeRO-3 every rank also pads its number of vision-tower calls
        (``ceil(frames / vision_chunk_size)``) to the largest over the ranks with dummy frames; the projector makes
        the same module calls for any frame count, so all ranks make the same module calls (see
        :meth:`_zero3_lockstep`).
        """
        pixel_values = data.get("pixel_values")
        cached = data.get("visual_features")  # [f, p, c] from a feature cache (frozen tower, stage 1)
        if cached is not None and (self.use_visual_encoder_lora or not self.freeze_visual_encoder):
            raise ValueError(
                "the batch holds cached vision features but this model trains its vision tower (LoRA or unfrozen): "
                "its features change every step; use the feature cache only in stage 1"
            )
        lockstep = self._zero3_lockstep()
        if pixel_values is None and cached is None and not self.training and not lockstep:
            return None, None
        dtype = self.visual_encoder.dtype
        device = self.llm.get_input_embeddings().weight.device
        size = self.visual_encoder.config.image_size

        def dummy_frame() -> torch.Tensor:
            return torch.zeros(1, 3, size, size, dtype=dtype, device=device)

        if cached is not None:
            frames = None
        elif pixel_values is None:
            frames = dummy_frame()
        elif pixel_values.dtype == torch.uint8:  # resized frames from the dataset: normalise here, on the device
            frames = normalize_pixels(pixel_values.to(device, non_blocking=True), data.get("pixel_affine")).to(dtype)
        else:
            frames = pixel_values.to(dtype)
        zero_terms = []  # outputs computed only to keep ranks in step; enter the loss with weight 0
        padding_calls = 0
        if lockstep:
            # agree on the number of vision calls BEFORE making any: each call all-gathers weights, so a rank
            # still in its second chunk would wait forever for a rank already waiting in this all_reduce
            calls = 0 if frames is None else -(-frames.shape[0] // self.vision_chunk_size)
            most = torch.tensor(calls, device=device)
            dist.all_reduce(most, op=dist.ReduceOp.MAX)
            padding_calls = int(most) - calls
            # the projector makes the same module calls whatever the frame counts (dense or block-sparse)
        if frames is None:
            features = cached.to(device)
        else:
            features = encode_frames(self.visual_encoder, frames, self.visual_select_layer, self.vision_chunk_size)
        for _ in range(padding_calls):
            padding = encode_frames(self.visual_encoder, dummy_frame(), self.visual_select_layer, 1)
            zero_terms.append(padding.sum() * 0.0)
        # in the projector's dtype: bf16 features of a bf16 tower meet the fp32 projector outside autocast
        # (generate, SampleAnswersHook), and a released projector's own code need not cast them itself
        features = features.to(next(self.projector.parameters()).dtype)
        if pixel_values is not None or cached is not None:
            media = self.projector(features, list(data["num_frames"]))
        else:
            media = None
            zero_terms.append(self.projector(features, [1]).sum() * 0.0)
        return media, (sum(zero_terms) if zero_terms else None)

    def _llm_inputs(self, data: Mapping[str, Any], with_labels: bool) -> tuple[dict, torch.Tensor | None]:
        media, zero_term = self._media_embeds(data)
        spliced = splice_media_embeds(
            self.llm.get_input_embeddings(),
            data["input_ids"],
            media,
            attention_mask=data.get("attention_mask"),
            labels=data.get("labels") if with_labels else None,
            padding_side="right",
        )
        if zero_term is not None and self._zero3_lockstep():
            # Under ZeRO-3 the backward pass must also make the same module calls on every rank. A text-only
            # batch's token embeddings need no gradient, so autograd would skip the frozen LLM weights' input
            # gradients (and a frozen LLM's whole backward) that a rank with media runs: fold the zero term into
            # the embeddings instead of the loss, so they need a gradient on every rank, as with media.
            spliced["inputs_embeds"] = spliced["inputs_embeds"] + zero_term.to(spliced["inputs_embeds"].dtype)
            zero_term = None
        return spliced, zero_term

    def _answer_loss(self, spliced: Mapping[str, Any], loss_divisor: float | None = None) -> torch.Tensor:
        """Next-token cross-entropy computed from logits at the labelled positions only.

        Same value as the LLM's own ``labels=`` loss (mean over labelled tokens), but the [tokens, vocab] fp32
        logits are built for answer tokens only instead of every position: with 8k-token samples and a 152k
        vocabulary that is several GiB per sample. With ``loss_chunk_size`` (the default) they are built
        ``loss_chunk_size`` tokens at a time and recomputed in backward (``videoccam.model.chunked_loss``), so not
        even the answer tokens' logits exist at once. Falls back to the LLM's loss for models whose head does
        more than a projection (logit soft-capping).

        Args:
            spliced: the output of :func:`splice_media_embeds` (with labels).
            loss_divisor: None: the mean over this batch's labelled tokens; a number: the sum of the token
                losses divided by it (``videoccam.engine.loops.TokenMeanTrainLoop`` sets it so that a step's loss
                is the mean over all answer tokens of all its micro-batches and ranks).
        """
        base = self.llm.get_base_model() if hasattr(self.llm, "get_base_model") else self.llm  # under peft
        decoder, head = base.get_decoder(), base.get_output_embeddings()
        if decoder is None or head is None or getattr(base.config, "final_logit_softcapping", None):
            loss = self.llm(
                inputs_embeds=spliced["inputs_embeds"], attention_mask=spliced["attention_mask"],
                position_ids=spliced["position_ids"], labels=spliced["labels"], use_cache=False, return_dict=True,
            ).loss
            if loss_divisor is None:
                return loss
            count = int((spliced["labels"][:, 1:] != IGNORE_INDEX).sum())
            return loss * (count / loss_divisor) if count else loss * 0.0
        hidden = decoder(
            inputs_embeds=spliced["inputs_embeds"],
            attention_mask=spliced["attention_mask"],
            position_ids=spliced["position_ids"],
            use_cache=False,
            return_dict=True,
        ).last_hidden_state  # [b, l', d_l]
        targets = spliced["labels"][:, 1:]  # [b, l'-1]
        keep = targets != IGNORE_INDEX
        if self.loss_chunk_size is not None:
            answer_targets = targets[keep]  # [n]
            count, min_chunks = answer_targets.numel(), 1
            if self._zero3_lockstep():  # every rank makes the same number of head calls (see chunked_loss)
                most = torch.tensor(num_loss_chunks(count, self.loss_chunk_size), device=hidden.device)
                dist.all_reduce(most, op=dist.ReduceOp.MAX)
                min_chunks = int(most)
            total = chunked_head_cross_entropy(
                head, hidden[:, :-1][keep], answer_targets, self.loss_chunk_size, min_chunks
            )  # summed over the n answer tokens
            if loss_divisor is not None:
                return total / loss_divisor
            return total / count if count else total * 0.0
        logits = head(hidden[:, :-1][keep]).float()  # [n_answer_tokens, vocab]
        if logits.shape[0] == 0:
            return logits.sum() * 0.0  # through the head, as on ranks with answer tokens (ZeRO-3 / DDP)
        if loss_divisor is None:
            return torch.nn.functional.cross_entropy(logits, targets[keep])
        return torch.nn.functional.cross_entropy(logits, targets[keep], reduction="sum") / loss_divisor

    def _llm_forward(self, data: Mapping[str, Any], with_labels: bool) -> tuple[Any, torch.Tensor | None]:
        spliced, zero_term = self._llm_inputs(data, with_labels)
        output = self.llm(
            inputs_embeds=spliced["inputs_embeds"],
            attention_mask=spliced["attention_mask"],
            position_ids=spliced["position_ids"],
            labels=spliced["labels"],
            use_cache=False,
            return_dict=True,
        )
        return output, zero_term

    # the loss takes data["loss_divisor"] (sum of token losses / divisor): TokenMeanTrainLoop checks this
    supports_loss_divisor = True

    def forward(self, data: Mapping[str, Any], data_samples: Any = None, mode: str = "loss") -> Any:
        """mmengine entry: ``loss`` -> {"loss": scalar}; ``tensor`` -> logits [b, l', vocab]; ``predict`` -> outputs.

        In ``loss`` mode the loss is the mean over the batch's answer tokens, or, when ``data["loss_divisor"]``
        is given, their summed loss divided by it (see :meth:`_answer_loss`).
        """
        if mode == "loss" and "input_ids" not in data:
            # every sample of this batch was skipped (on_error="skip"): a zero loss from the same module calls
            # as a real step (vision tower and projector on a dummy frame, the loss path on two dummy tokens, the
            # second one labelled), so every trainable weight gets a (zero) gradient and DDP / DeepSpeed ranks
            # stay in step. Summing the parameters directly would not do under ZeRO-3, where a weight is only
            # gathered inside its module's forward.
            device = self.llm.get_input_embeddings().weight.device
            tokens = torch.zeros(1, 2, dtype=torch.long, device=device)
            labels = torch.tensor([[IGNORE_INDEX, 0]], device=device)
            spliced, zero_term = self._llm_inputs(
                {"input_ids": tokens, "attention_mask": torch.ones_like(tokens), "labels": labels}, with_labels=True
            )
            loss = self._answer_loss(spliced) * 0.0
            return {"loss": loss if zero_term is None else loss + zero_term}
        if mode == "loss":
            spliced, zero_term = self._llm_inputs(data, with_labels=True)
            loss = self._answer_loss(spliced, data.get("loss_divisor"))
            return {"loss": loss if zero_term is None else loss + zero_term}
        if mode == "tensor":
            return self._llm_forward(data, with_labels=False)[0].logits
        if mode == "predict":
            return self._llm_forward(data, with_labels=False)[0]
        raise ValueError(f"unknown mode {mode!r}; expected 'loss', 'tensor' or 'predict'")

    @torch.no_grad()
    def generate(self, data: Mapping[str, Any], **generate_kwargs: Any) -> torch.Tensor:
        """Generate from the model as it trains (``videoccam.engine.sample_answers.SampleAnswersHook``).

        The same media path and splice as training (so what is asked is what is trained), then the LLM's
        ``generate`` on the spliced embeddings with a KV cache. Call it in eval mode. Under DeepSpeed ZeRO-3 every
        rank must call it with the same inputs (every module call gathers weights): it then passes
        ``synced_gpus=True`` so the ranks also take the same number of decoding steps.

        Args:
            data: ``input_ids`` [b, l] (left-padded prompts with placeholders), optional ``attention_mask``,
                ``pixel_values`` [f, 3, h, w] and ``num_frames`` (one entry per placeholder).
            **generate_kwargs: passed to the LLM's ``generate`` (``max_new_tokens``, ``eos_token_id``, ...).

        Returns:
            the new tokens only, [b, n].
        """
        media, _ = self._media_embeds(data)
        spliced = splice_media_embeds(
            self.llm.get_input_embeddings(),
            data["input_ids"],
            media,
            attention_mask=data.get("attention_mask"),
            padding_side="left",
        )
        generate_kwargs.setdefault("use_cache", True)  # the training config turns the cache off
        if self._zero3_lockstep():
            generate_kwargs["synced_gpus"] = True
        return self.llm.generate(
            inputs_embeds=spliced["inputs_embeds"], attention_mask=spliced["attention_mask"], **generate_kwargs
        )

    # -- export -------------------------------------------------------------------------------------------
    def to_hf(
        self,
        cfg: Any,
        save_dir: str,
        fp32: bool = False,
        save_pretrained_kwargs: dict | None = None,
        save_format: str = "xtuner",
        **kwargs: Any,
    ) -> None:
        """Called by ``xtuner convert pth_to_hf``. ``xtuner`` writes adapters + ``projector/``;
        ``huggingface`` writes the merged single-folder model (needs real, not meta, base weights); ``released``
        writes the layout of the release a fine-tuning started from (``cfg.released_path``; real weights)."""
        from videoccam.export.hf_folder import save_hf_folder
        from videoccam.export.released_layout import save_released_layout
        from videoccam.export.xtuner_layout import save_xtuner_layout

        save_pretrained_kwargs = dict(save_pretrained_kwargs or {})
        if save_format == "xtuner":
            save_xtuner_layout(self, cfg, save_dir, fp32=fp32, save_pretrained_kwargs=save_pretrained_kwargs)
        elif save_format == "huggingface":
            save_hf_folder(self, cfg, save_dir, fp32=fp32, save_pretrained_kwargs=save_pretrained_kwargs)
        elif save_format == "released":
            save_released_layout(self, cfg, save_dir, fp32=fp32)
        else:
            raise ValueError(
                f"save_format must be 'xtuner', 'huggingface' or 'released' for VideoCCAMModel, got {save_format!r}"
            )
