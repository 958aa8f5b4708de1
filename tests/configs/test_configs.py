"""Every config in configs/ loads, binds against its callables, matches its LLM family, and the real recipes train.

* Binding: each ``dict(type=..., **kwargs)`` node, recursively (lists included), is bound with
  ``inspect.signature(type).bind_partial(**kwargs)``; an unknown keyword fails here, not on 64 GPUs.
* Recipes: hyper-parameters of design.md section 3 and the values of part 1 reach every place that reads them.
* Families: chat template and stop words by the LLM id (a table in this test; library code knows no model names),
  rendered against the tiny tokenizer of the family; generation stops at the template's STOP_WORDS.
* Training: each family's stage 1, then stage 2 from its checkpoint (and the QLoRA variant without its
  quantisation), 2 iterations on CPU through mmengine's Runner with the tiny models substituted for the hub ids.
* Released models (configs/released/): each starts from its release with the base LLM and chat format of that
  release, its part 1 reaches every key, and one config per layout trains with the tiny replicas substituted.
* The QLoRA recipe on a machine without CUDA stops at start-up with a message that says what it needs.
"""

from __future__ import annotations

import inspect
import json
import math
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from mmengine.config import Config, ConfigDict
from mmengine.runner import Runner
from transformers import BitsAndBytesConfig
from xtuner.utils import PROMPT_TEMPLATE

from tests.conftest import ROOT, load_tool, tiny_cfg_options
from videoccam.export.tokenizer import make_generation_config, prepare_tokenizer
from videoccam.memory_plan import BUILTIN_ARCHITECTURES
from videoccam.model.hf.ccam_projector import CCAMProjectorConfig

CONFIG_DIR = ROOT / "configs"
ALL_CONFIGS = sorted(
    p for p in CONFIG_DIR.rglob("*.py") if "_base_" not in p.parts and p.name != "__init__.py"
)
RELEASED = [p for p in ALL_CONFIGS if p.relative_to(CONFIG_DIR).parts[0] == "released"]  # from a release
RECIPES = [p for p in ALL_CONFIGS if p.relative_to(CONFIG_DIR).parts[0] not in ("tiny", "released")]
QLORA = CONFIG_DIR / "phi3_mini_4k/videoccam_phi3_mini_4k_stage2_qlora_1x24gb.py"


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


# The released family (design.md section 1): LLM id -> chat family, context window.
FAMILY_OF = {
    "microsoft/Phi-3-mini-4k-instruct": "phi3",
    "microsoft/Phi-3.5-mini-instruct": "phi3",
    "Qwen/Qwen2.5-7B-Instruct": "chatml",
    "01-ai/Yi-1.5-9B-Chat": "chatml",
    "microsoft/Phi-3-medium-4k-instruct": "phi3",
}
FAMILIES = {
    "phi3": dict(template=PROMPT_TEMPLATE.phi3_chat, eos="<|end|>", stop={"<|end|>", "<|endoftext|>"}, tiny="phi3"),
    "chatml": dict(template=PROMPT_TEMPLATE.qwen_chat, eos="<|im_end|>", stop={"<|im_end|>", "<|endoftext|>"},
                   tiny="qwen2"),
}
STEM = {  # config folder per LLM
    "microsoft/Phi-3-mini-4k-instruct": "phi3_mini_4k",
    "microsoft/Phi-3.5-mini-instruct": "phi3_5_mini",
    "Qwen/Qwen2.5-7B-Instruct": "qwen2_5_7b",
    "01-ai/Yi-1.5-9B-Chat": "yi1_5_9b",
    "microsoft/Phi-3-medium-4k-instruct": "phi3_medium_4k",
}


@pytest.fixture(scope="module")
def loaded() -> dict[Path, Config]:
    return {path: Config.fromfile(str(path)) for path in ALL_CONFIGS}


# ----------------------------------------------------------------------------------------------------------------
# Binding every dict(type=...) node against its callable
# ----------------------------------------------------------------------------------------------------------------
def _resolve(type_: Any, where: str) -> Callable:
    """A config ``type``: a callable, or a registry name such as "OptimWrapper"."""
    if callable(type_):
        return type_
    if isinstance(type_, str):
        import mmengine.registry as registries

        for value in vars(registries).values():
            if isinstance(value, registries.Registry):
                found = value.get(type_)
                if found is not None:
                    return found
        from mmengine.utils import get_object_from_string  # dotted paths, e.g. in a dumped config

        found = get_object_from_string(type_)
        if found is not None:
            return found
    pytest.fail(f"{where}: type {type_!r} is neither a callable nor a registered name")


# Callables whose **kwargs would swallow typos (stored as attributes or only warned about): bound against their
# named parameters only.
STRICT = {CCAMProjectorConfig, BitsAndBytesConfig}
# Keys the builder consumes before calling the type.
BUILDER_KEYS = {"type", "_scope_", "convert_to_iter_based"}


def _named_parameters(fn: Callable) -> tuple[inspect.Signature, bool]:
    signature = inspect.signature(fn)
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())
    return signature, var_kw


def _forwarded_to(cls: type) -> type | None:
    """The base class a class hands its **kwargs to (``super().__init__(**kwargs)``), if any."""
    try:
        source = inspect.getsource(cls.__init__)
    except (OSError, TypeError):
        return None
    if "super().__init__(" in source and "**kwargs" in source.split("super().__init__(", 1)[1].split(")", 1)[0]:
        for base in cls.__mro__[1:]:
            if "__init__" in vars(base) and base is not object:
                return base
    return None


def bind(fn: Callable, kwargs: dict[str, Any], where: str) -> None:
    """``bind_partial`` the keyword arguments; follow ``**kwargs`` to the base class they are forwarded to."""
    try:
        signature, var_kw = _named_parameters(fn)
    except (TypeError, ValueError):
        return  # builtins without a signature
    try:
        signature.bind_partial(**kwargs)
    except TypeError as e:
        pytest.fail(f"{where}: {getattr(fn, '__qualname__', fn)}{signature} rejects {sorted(kwargs)}: {e}")
    named = {n for n, p in signature.parameters.items() if p.kind is not inspect.Parameter.VAR_KEYWORD}
    leftover = {k: v for k, v in kwargs.items() if k not in named}
    if not var_kw or not leftover:
        return
    if fn in STRICT:
        pytest.fail(f"{where}: {fn.__qualname__} has no parameter(s) {sorted(leftover)}")
    base = _forwarded_to(fn) if inspect.isclass(fn) else None
    if base is not None:
        bind(base, leftover, f"{where} (forwarded to {base.__qualname__})")


def iter_type_nodes(node: Any, where: str) -> Iterator[tuple[str, Any, dict[str, Any]]]:
    """(path, type, kwargs) of every dict with a ``type`` key, depth first, through dicts and lists."""
    if isinstance(node, (dict, ConfigDict)):
        items = dict(node.items())
        if "type" in items:
            kwargs = {k: v for k, v in items.items() if k not in BUILDER_KEYS}
            yield where, items["type"], kwargs
        for key, value in items.items():
            yield from iter_type_nodes(value, f"{where}.{key}" if where else str(key))
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from iter_type_nodes(value, f"{where}[{i}]")


def _untyped_nodes(cfg: Config) -> list[tuple[str, Callable, dict[str, Any]]]:
    """Dicts without ``type`` whose keys still end up as keyword arguments of a known callable."""
    from torch.nn.utils import clip_grad_norm_
    from torch.utils.data import DataLoader

    nodes = []
    projector = cfg.model.get("projector")
    if isinstance(projector, dict) and "type" not in projector:
        nodes.append(("model.projector", CCAMProjectorConfig, dict(projector)))
    clip = cfg.get("optim_wrapper", {}).get("clip_grad")
    if clip:
        nodes.append(("optim_wrapper.clip_grad", clip_grad_norm_, {k: v for k, v in clip.items() if k != "type"}))
    loader = cfg.get("train_dataloader")
    if loader:  # mmengine builds dataset/sampler/collate_fn itself and passes the rest to DataLoader
        rest = {k: v for k, v in loader.items() if k not in ("dataset", "sampler", "batch_sampler", "collate_fn")}
        nodes.append(("train_dataloader", DataLoader, rest))
    if cfg.get("randomness"):
        nodes.append(("randomness", Runner.set_randomness, dict(cfg.randomness)))
    return nodes


@pytest.mark.parametrize("path", ALL_CONFIGS, ids=_rel)
def test_config_nodes_bind_to_their_callables(loaded, path):
    cfg = loaded[path]
    nodes = list(iter_type_nodes(cfg._cfg_dict, ""))
    assert any(where == "model" for where, _, _ in nodes), f"{_rel(path)} has no model"
    for where, type_, kwargs in nodes:
        bind(_resolve(type_, where), kwargs, f"{_rel(path)}: {where}")
    for where, fn, kwargs in _untyped_nodes(cfg):
        bind(fn, kwargs, f"{_rel(path)}: {where}")


def test_binding_catches_a_renamed_argument(loaded):
    """The check itself: a misspelt keyword anywhere in the tree fails."""
    cfg = Config.fromfile(str(RECIPES[0]))
    cfg.train_dataloader.dataset.num_frame = 16  # VideoCCAMDataset takes num_frames
    failures = []
    for where, type_, kwargs in iter_type_nodes(cfg._cfg_dict, ""):
        try:
            bind(_resolve(type_, where), kwargs, where)
        except pytest.fail.Exception as e:
            failures.append(str(e))
    assert len(failures) == 1 and "num_frame" in failures[0]
    for bad, node in (("droput", "model.projector"), ("max_nrom", "optim_wrapper.clip_grad")):
        cfg = Config.fromfile(str(RECIPES[0]))
        cfg.merge_from_dict({f"{node}.{bad}": 1})
        with pytest.raises(pytest.fail.Exception, match=bad):
            for where, fn, kwargs in _untyped_nodes(cfg):
                bind(fn, kwargs, where)
    cfg = Config.fromfile(str(RECIPES[0]))
    cfg.optim_wrapper.loss_scael = "dynamic"  # AmpOptimWrapper(**kwargs) forwards to OptimWrapper
    with pytest.raises(pytest.fail.Exception, match="loss_scael"):
        bind(_resolve(cfg.optim_wrapper["type"], "optim_wrapper"),
             {k: v for k, v in cfg.optim_wrapper.items() if k != "type"}, "optim_wrapper")


# ----------------------------------------------------------------------------------------------------------------
# The recipes: hyper-parameters and consistency of part 1 with parts 2-5
# ----------------------------------------------------------------------------------------------------------------
def test_every_released_family_has_a_stage1_and_a_stage2_recipe(loaded):
    seen = {}
    for path in RECIPES:
        cfg = loaded[path]
        stage = 2 if cfg.model.get("llm_lora") else 1
        seen.setdefault(cfg.llm_name_or_path, set()).add(stage)
    assert seen == {llm: {1, 2} for llm in FAMILY_OF}
    assert QLORA in RECIPES


@pytest.mark.parametrize("path", RECIPES, ids=_rel)
def test_recipe_hyper_parameters_and_part1_values(loaded, path):
    cfg = loaded[path]
    model, loader, dataset = cfg.model, cfg.train_dataloader, cfg.train_dataloader.dataset
    stage2 = model.get("llm_lora") is not None
    llm, vision = cfg.llm_name_or_path, cfg.visual_encoder_name_or_path
    # every place that reads a part-1 value got it
    assert model.llm.pretrained_model_name_or_path == cfg.tokenizer.pretrained_model_name_or_path == \
        dataset.tokenizer.pretrained_model_name_or_path == llm
    assert model.visual_encoder.pretrained_model_name_or_path == cfg.image_processor.pretrained_model_name_or_path \
        == dataset.image_processor.pretrained_model_name_or_path == vision == "google/siglip-so400m-patch14-384"
    assert dataset.template == cfg.prompt_template
    assert dataset.max_length == cfg.max_length <= cfg.llm_context
    assert cfg.llm_context == BUILTIN_ARCHITECTURES[llm]["max_position_embeddings"]
    # the whole context up to 8k, less where the LLM's sliding window would hide the media from late answers
    window = BUILTIN_ARCHITECTURES[llm].get("sliding_window")
    hidden = window is not None and BUILTIN_ARCHITECTURES[llm].get("use_sliding_window", True)
    assert cfg.max_length == min(cfg.llm_context, 8192, *([window + cfg.num_queries - 1] if hidden else []))
    assert dataset.num_queries == model.projector.num_queries == cfg.num_queries == 1024
    assert cfg.text_budget == cfg.max_length - cfg.num_queries > 0
    assert dataset.num_frames == 16 and dataset.sampling == "uniform"
    assert dataset.data_path == cfg.data_path and dataset.data_root == cfg.data_root
    # batch: num_gpus x per-device x accumulation = global batch of design.md section 3
    assert loader.batch_size == cfg.batch_size
    assert cfg.optim_wrapper.accumulative_counts == cfg.accumulative_counts
    assert loader.sampler["type"].__name__ == "LengthGroupedSampler"
    assert loader.sampler.length_property == "modality_length"
    assert loader.sampler.per_device_batch_size == cfg.batch_size * cfg.accumulative_counts
    assert cfg.num_gpus * cfg.batch_size * cfg.accumulative_counts == cfg.global_batch_size == (128 if stage2 else 256)
    # optimisation
    assert cfg.optim_wrapper["type"].__name__ == "AmpOptimWrapper" and cfg.optim_wrapper.dtype == "bfloat16"
    assert cfg.optim_wrapper.optimizer["type"] is torch.optim.AdamW
    assert cfg.optim_wrapper.optimizer.lr == (2e-4 if stage2 else 1e-3)
    assert cfg.optim_wrapper.clip_grad.max_norm == 1
    # no checkpoint inside an optimizer step (DeepSpeed's --resume would shift every later step)
    assert cfg.default_hooks.checkpoint.interval == cfg.save_steps
    assert cfg.save_steps % cfg.accumulative_counts == 0
    warmup, cosine = cfg.param_scheduler
    assert warmup.end == cosine.begin == 0.03 * cfg.max_epochs and cosine.end == cfg.max_epochs == 1
    assert cfg.env_cfg.dist_cfg.backend == "nccl"
    # model
    assert model.llm.torch_dtype is torch.bfloat16 and model.visual_encoder.torch_dtype is torch.bfloat16
    assert model.llm.attn_implementation == "sdpa"
    assert model.use_activation_checkpointing is True
    assert model.freeze_llm and model.freeze_visual_encoder
    assert model.visual_select_layer == -2
    projector = model.projector
    assert (projector.hidden_size, projector.num_heads, projector.intermediate_size, projector.dropout) == \
        (1024, 16, 4096, 0.1)
    if stage2:
        assert model.pretrained_pth == cfg.pretrained_pth == f"work_dirs/videoccam_{STEM[llm]}_stage1"
        assert (CONFIG_DIR / STEM[llm] / f"videoccam_{STEM[llm]}_stage1.py").is_file()
        llm_lora, vis_lora = model.llm_lora, model.visual_encoder_lora
        expected_r = (256, 128) if path == QLORA else (512, 256)
        assert (llm_lora.r, llm_lora.lora_alpha, llm_lora.lora_dropout) == (*expected_r, 0.05)
        assert (vis_lora.r, vis_lora.lora_alpha, vis_lora.lora_dropout) == (64, 16, 0.05)
        assert llm_lora.get("target_modules") is None  # all linear layers but lm_head
    else:
        assert model.pretrained_pth is None and model.get("llm_lora") is None
    quantization = model.llm.get("quantization_config")
    assert (quantization is not None) == (path == QLORA)


@pytest.mark.parametrize("path", ALL_CONFIGS, ids=_rel)
def test_every_config_is_watched_tensorboard_throughput_and_sample_answers(loaded, path):
    """Curves (json + TensorBoard when installed), throughput on; sample answers off in the recipes, on in the
    tiny stage 2 and the configs that read it (configs/README.md, "Watching a run")."""
    cfg = loaded[path]
    assert cfg.visualizer["type"].__name__ == "TrainingVisualizer" and cfg.visualizer.tensorboard is True
    hooks = [h["type"].__name__ for h in cfg.custom_hooks]
    assert hooks[:3] == ["SkippedSamplesHook", "ThroughputHook", "SampleAnswersHook"]
    sample = cfg.custom_hooks[2]
    assert sample.interval == cfg.sample_interval and sample.max_new_tokens == cfg.sample_max_new_tokens
    assert sample.samples == cfg.sample_questions == [] and sample.num_frames is None
    # the tiny configs derived from stage 2 (the temporal ablation's derives from stage 1)
    tiny_stage2 = "tiny" in path.parts and "stage1" not in path.name and "temporal" not in path.name
    assert cfg.sample_interval == (400 if tiny_stage2 else 0)


def test_qlora_recipe_is_the_stage2_recipe_in_4_bit_on_one_gpu(loaded):
    cfg = loaded[QLORA]
    base = loaded[CONFIG_DIR / "phi3_mini_4k/videoccam_phi3_mini_4k_stage2.py"]
    q = cfg.model.llm.quantization_config
    assert q["type"].__name__ == "BitsAndBytesConfig"
    assert q.load_in_4bit and q.bnb_4bit_quant_type == "nf4" and q.bnb_4bit_compute_dtype is torch.bfloat16
    assert cfg.num_gpus == 1 and cfg.batch_size * cfg.accumulative_counts == 128
    lora, base_lora = cfg.model.llm_lora, base.model.llm_lora
    assert lora.lora_alpha / lora.r == base_lora.lora_alpha / base_lora.r
    assert cfg.optim_wrapper.optimizer.lr == base.optim_wrapper.optimizer.lr


# ----------------------------------------------------------------------------------------------------------------
# Chat template and stop words against the tokenizer family
# ----------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def family_tokenizers(tiny_models):
    from transformers import AutoTokenizer

    return {name: AutoTokenizer.from_pretrained(tiny_models / spec["tiny"]) for name, spec in FAMILIES.items()}


@pytest.mark.parametrize("path", RECIPES, ids=_rel)
def test_template_and_stop_words_match_the_llm_family(loaded, family_tokenizers, path):
    cfg = loaded[path]
    family = FAMILY_OF[cfg.llm_name_or_path]
    spec, tokenizer = FAMILIES[family], family_tokenizers[family]
    template = cfg.prompt_template
    assert template == spec["template"], f"{_rel(path)}: {cfg.llm_name_or_path} needs the {family} template"
    # generation stops at the template's STOP_WORDS (the exported generation config, make_generation_config)
    assert template.STOP_WORDS[0] == spec["eos"] and set(template.STOP_WORDS) <= spec["stop"]
    prepared = prepare_tokenizer(tokenizer, template)
    stop_ids = make_generation_config(prepared, template).eos_token_id
    assert prepared.convert_ids_to_tokens(stop_ids) == list(template.STOP_WORDS)
    # what training teaches the model to end an answer with is the family's end-of-turn token
    assert template.SUFFIX == spec["eos"] == tokenizer.eos_token
    # the xtuner template renders a user turn exactly as the family's own chat template does
    question = "<video>\nWhat happens first?"
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                             add_generation_prompt=True)
    assert rendered == template.INSTRUCTION.format(input=question)
    for word in spec["stop"]:  # each stop word is one special token of the family's tokenizer
        assert len(tokenizer(word, add_special_tokens=False).input_ids) == 1, word


# ----------------------------------------------------------------------------------------------------------------
# GPU-only settings on CPU
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the start-up failure on a machine without CUDA")
def test_qlora_recipe_fails_at_start_up_without_cuda(tmp_path, capsys):
    """The recipe as shipped (hub ids, no network needed): the model refuses before loading anything; tools/train.py
    exits 1 with the reason among its last lines."""
    train = load_tool("train")
    assert train.main([str(QLORA), "--work-dir", str(tmp_path), "--cfg-options", "env_cfg.dist_cfg.backend=gloo"]) == 1
    last = "\n".join(capsys.readouterr().err.strip().splitlines()[-3:])
    assert re.search(r"QLoRA needs a CUDA GPU and bitsandbytes>=0\.45\.1,<0\.46: pip install", last), last
    assert not (tmp_path / "last_checkpoint").exists()


# ----------------------------------------------------------------------------------------------------------------
# Each recipe trains 2 iterations on CPU with the tiny models substituted for the hub ids
# ----------------------------------------------------------------------------------------------------------------
def tiny_options(tiny_models: Path, data: Path, data_file: str, llm: str, work: Path) -> dict[str, Any]:
    """Hub ids -> tiny models, data -> the synthetic fixture, sizes down to tiny, GPU-only settings to CPU ones."""
    options = dict(item.split("=", 1) for item in tiny_cfg_options(tiny_models, data, data_file, llm=llm))
    options.update({
        "model.llm.torch_dtype": "float32",
        "model.visual_encoder.torch_dtype": "float32",
        "model.llm.attn_implementation": "sdpa",
        "model.visual_encoder.attn_implementation": "sdpa",
        "model.projector.num_queries": 32,
        "model.projector.hidden_size": 64,
        "model.projector.num_heads": 4,
        "model.projector.intermediate_size": 128,
        "train_dataloader.dataset.num_queries": 32,
        "train_dataloader.dataset.max_length": 512,
        "train_dataloader.dataset.max_dataset_length": 4,
        "train_dataloader.batch_size": 2,
        "train_dataloader.sampler.per_device_batch_size": 2,
        "train_dataloader.num_workers": 0,
        "train_dataloader.pin_memory": False,
        "optim_wrapper.accumulative_counts": 1,
        "env_cfg.dist_cfg.backend": "gloo",
        # 2 iterations: a warm-up of 1 iteration (3% of 2 rounds down to 0), then the cosine
        "param_scheduler.0.end": 0.5,
        "param_scheduler.1.begin": 0.5,
        "default_hooks.logger.interval": 1,
        "randomness.seed": 0,
        "work_dir": str(work),
    })  # fmt: skip
    return options


def train_two_iterations(config: Path, options: dict[str, Any]) -> tuple[Path, float]:
    """Build the recipe with ``options`` and train it through mmengine's Runner (what ``xtuner train`` runs)."""
    cfg = Config.fromfile(str(config))
    cfg.merge_from_dict(options)
    # AmpOptimWrapper (bf16 autocast) is GPU-only; its optimizer, clipping and accumulation stay
    cfg.optim_wrapper.pop("dtype")
    cfg.optim_wrapper.type = "OptimWrapper"
    cfg.launcher = "none"
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 2
    loss = runner.message_hub.get_scalar("train/loss").current()
    marker = Path(cfg.work_dir) / "last_checkpoint"
    assert marker.is_file(), f"{_rel(config)} wrote no checkpoint"
    checkpoint = Path(marker.read_text().strip())
    assert checkpoint.is_file()
    return checkpoint, float(loss)


@pytest.mark.parametrize("llm", list(FAMILY_OF), ids=lambda llm: STEM[llm])
def test_recipe_stage1_then_stage2_train_two_iterations_on_tiny_models(tiny_models, synthetic_data, tmp_path, llm):
    stem = STEM[llm]
    tiny = FAMILIES[FAMILY_OF[llm]]["tiny"]
    stage1 = CONFIG_DIR / stem / f"videoccam_{stem}_stage1.py"
    stage2 = CONFIG_DIR / stem / f"videoccam_{stem}_stage2.py"
    ckpt1, loss1 = train_two_iterations(
        stage1, tiny_options(tiny_models, synthetic_data, "captions.json", tiny, tmp_path / "s1")
    )
    state1 = torch.load(ckpt1, map_location="cpu", weights_only=False)["state_dict"]
    assert state1 and all(k.startswith("projector.") for k in state1)
    assert math.isfinite(loss1)

    options = tiny_options(tiny_models, synthetic_data, "train.json", tiny, tmp_path / "s2")
    options["model.pretrained_pth"] = str(tmp_path / "s1")  # the stage-1 work dir, as in the recipe
    runs = [(stage2, options)]
    if stage2.parent == QLORA.parent:  # the QLoRA variant, quantisation removed (GPU-only)
        runs.append((QLORA, dict(options, **{"model.llm.quantization_config": None, "work_dir": str(tmp_path / "q")})))
    for config, opts in runs:
        ckpt2, loss2 = train_two_iterations(config, opts)
        state2 = torch.load(ckpt2, map_location="cpu", weights_only=False)["state_dict"]
        assert math.isfinite(loss2)
        assert set(state1) < set(state2)
        assert any("llm" in k and "lora_" in k for k in state2) and any("visual_encoder" in k and "lora_" in k
                                                                        for k in state2)
        assert all(k.startswith("projector.") or "lora_" in k for k in state2)


# ----------------------------------------------------------------------------------------------------------------
# Fine-tuning the released models (configs/released/)
# ----------------------------------------------------------------------------------------------------------------
# release -> (layout, its LLM); design.md section 1 and 8
RELEASES = {
    "videoccam_4b_finetune.py": ("Video-CCAM-4B", "v1.0", "microsoft/Phi-3-mini-4k-instruct"),
    "videoccam_4b_v1_1_finetune.py": ("Video-CCAM-4B-v1_1", "v1.0", "microsoft/Phi-3-mini-4k-instruct"),
    "videoccam_9b_finetune.py": ("Video-CCAM-9B", "v1.0", "01-ai/Yi-1.5-9B-Chat"),
    "videoccam_9b_v1_1_finetune.py": ("Video-CCAM-9B-v1_1", "v1.0", "01-ai/Yi-1.5-9B-Chat"),
    "videoccam_14b_finetune.py": ("Video-CCAM-14B", "v1.0", "microsoft/Phi-3-medium-4k-instruct"),
    "videoccam_14b_v1_1_finetune.py": ("Video-CCAM-14B-v1_1", "v1.0", "microsoft/Phi-3-medium-4k-instruct"),
    "videoccam_4b_v1_2_finetune.py": ("Video-CCAM-4B-v1_2", "v1.2", "microsoft/Phi-3.5-mini-instruct"),
    "videoccam_7b_v1_2_finetune.py": ("Video-CCAM-7B-v1_2", "v1.2", "Qwen/Qwen2.5-7B-Instruct"),
}


def test_every_released_model_has_a_finetuning_config():
    assert sorted(p.name for p in RELEASED) == sorted(RELEASES)


@pytest.mark.parametrize("path", RELEASED, ids=_rel)
def test_released_finetuning_configs_start_from_their_release(loaded, path):
    from videoccam.model.released import (
        released_folder_part,
        released_llm,
        released_projector,
        released_visual_encoder,
    )

    cfg = loaded[path]
    release, layout, llm = RELEASES[path.name]
    model, dataset = cfg.model, cfg.train_dataloader.dataset
    assert cfg.released_path == f"checkpoints/{release}" and "." not in release
    parts = (model.llm, model.visual_encoder, model.projector)
    assert all(part.released_path == cfg.released_path for part in parts)
    assert dataset.data_path == cfg.data_path and dataset.data_root == cfg.data_root
    assert dataset.num_queries == cfg.num_queries == 1024
    assert dataset.template == cfg.prompt_template == FAMILIES[FAMILY_OF[llm]]["template"]
    assert cfg.optim_wrapper.optimizer.lr == cfg.lr and cfg.train_cfg.max_epochs == cfg.max_epochs
    assert cfg.param_scheduler[1].end == cfg.max_epochs
    assert model.visual_select_layer == -2 and model.pretrained_pth is None
    if layout == "v1.0":  # base models + the released adapters, which train further; no new adapters
        assert (model.llm.type, model.visual_encoder.type, model.projector.type) == (
            released_llm, released_visual_encoder, released_projector)
        assert model.llm.llm_name_or_path == cfg.llm_name_or_path == llm
        assert cfg.tokenizer.pretrained_model_name_or_path == dataset.tokenizer.pretrained_model_name_or_path == llm
        assert model.visual_encoder.visual_encoder_name_or_path == cfg.visual_encoder_name_or_path == \
            cfg.image_processor.pretrained_model_name_or_path == "google/siglip-so400m-patch14-384"
        assert model.get("llm_lora") is None and model.get("visual_encoder_lora") is None
    else:  # one folder: its parts by role, its tokenizer; new LoRA adapters as in stage 2
        assert {part.type for part in parts} == {released_folder_part}
        assert [part.role for part in parts] == ["llm", "visual_encoder", "projector"]
        assert cfg.tokenizer.pretrained_model_name_or_path == dataset.tokenizer.pretrained_model_name_or_path == \
            cfg.image_processor.pretrained_model_name_or_path == cfg.released_path
        assert cfg.llm_name_or_path == llm  # the stage-2 recipe it reads is that of the release's LLM
        assert model.llm_lora.r == 512 and model.visual_encoder_lora.r == 64


@pytest.mark.parametrize("name", ["videoccam_4b_finetune.py", "videoccam_7b_v1_2_finetune.py"])
def test_released_finetuning_config_trains_two_iterations_on_the_tiny_replicas(released_replicas, example_media,
                                                                              tiny_models, tmp_path, name):  # fmt: skip
    from tests.conftest import released_options

    version = {"v1.0": "v1_0", "v1.2": "v1_2"}[RELEASES[name][1]]
    options = tiny_options(tiny_models, example_media, "train.jsonl", "qwen2", tmp_path / "work")
    for key in [k for k in options if k.startswith("model.llm.") or k.startswith("model.visual_encoder.")
                or k.startswith("model.projector.") or "pretrained_model_name_or_path" in k]:  # fmt: skip
        del options[key]  # the release's builders, not the stage recipe's
    options.update(released_options(released_replicas, version, example_media))
    options.update({
        "model.llm.torch_dtype": "float32",
        "model.visual_encoder.torch_dtype": "float32",
        "model.use_activation_checkpointing": False,
        "train_dataloader.dataset.num_queries": 16,
        "train_dataloader.dataset.template": PROMPT_TEMPLATE.qwen_chat,  # the tiny LLM's format
    })  # fmt: skip
    if version == "v1_2":
        options.update({"model.llm_lora.r": 4, "model.llm_lora.lora_alpha": 8, "model.visual_encoder_lora.r": 4})
    checkpoint, loss = train_two_iterations(CONFIG_DIR / "released" / name, options)
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    assert math.isfinite(loss)
    assert any(k.startswith("projector.query") for k in state)  # the released projector's own names
    assert all(k.startswith("projector.") or "lora_" in k for k in state)


# ----------------------------------------------------------------------------------------------------------------
# GPU settings that no CPU run exercises: the LLM's attention window, the DeepSpeed JSONs
# ----------------------------------------------------------------------------------------------------------------
def _llm_id(cfg: Config, path: Path) -> str:
    return RELEASES[path.name][2] if path in RELEASED else cfg.llm_name_or_path


@pytest.mark.parametrize("path", RECIPES + RELEASED, ids=_rel)
def test_every_answer_can_see_its_media_through_the_llms_attention_window(loaded, path):
    """Phi-3-mini-4k and Phi-3-medium-4k attend through a 2,047-token sliding window: with 1,024 visual tokens at
    the start, tokens from position 3,070 on would see no visual token (videoccam.engine.startup_checks)."""
    from transformers import AutoConfig

    from videoccam.engine.startup_checks import check_attention_window

    cfg = loaded[path]
    values = dict(BUILTIN_ARCHITECTURES[_llm_id(cfg, path)])
    llm_config = AutoConfig.for_model(values.pop("model_type"), **values)
    dataset = cfg.train_dataloader.dataset
    assert check_attention_window(llm_config, dataset.max_length, dataset.num_queries) is None


GPU_JSONS = {CONFIG_DIR / "deepspeed/zero2_bf16.json", CONFIG_DIR / "deepspeed/zero3_bf16.json"}


def _deepspeed_arguments(text: str) -> list[str]:
    return re.findall(r"--deepspeed\s+([\w./-]+)", text)


@pytest.mark.parametrize("path", [p for p in RECIPES + RELEASED if p != QLORA], ids=_rel)
def test_gpu_recipes_run_with_the_projects_deepspeed_jsons(path):
    """The command each recipe gives names a project JSON that sums gradients in fp32, not xtuner's
    deepspeed_zero2 (bf16 accumulation over 2 to 16 micro-batches)."""
    header = "".join(line for line in path.read_text().splitlines(keepends=True) if line.startswith("#"))
    arguments = _deepspeed_arguments(header)
    assert arguments and {ROOT / a for a in arguments} <= GPU_JSONS, arguments
    for json_path in GPU_JSONS:
        data = json.loads(json_path.read_text())
        assert data["data_types"]["grad_accum_dtype"] == "fp32"
        assert data["bf16"]["enabled"] or data["torch_autocast"] == {"enabled": True, "dtype": "bfloat16"}


@pytest.mark.parametrize("doc", ["README.md", "configs/README.md", "configs/deepspeed/README.md"])
def test_documented_gpu_commands_use_the_projects_deepspeed_jsons(doc):
    arguments = _deepspeed_arguments((ROOT / doc).read_text())
    assert arguments
    assert all((ROOT / a).is_file() and a.startswith("configs/deepspeed/") for a in arguments), arguments
    gpu = [a for a in arguments if "cpu" not in a]
    assert all(ROOT / a in GPU_JSONS for a in gpu), gpu


@pytest.mark.slow
@pytest.mark.parametrize("json_name", ["zero2_bf16.json", "xtuner_deepspeed_zero2"])
def test_the_zero2_json_sums_gradients_in_fp32_and_computes_in_bf16(tiny_models, tmp_path, json_name):
    """The installed DeepSpeed, one process on gloo (tests/engine/deepspeed_dtype_worker.py): with
    configs/deepspeed/zero2_bf16.json four micro-batches' gradients (0.25 and three 7.5e-4) add up in fp32 and
    the projector and LoRA layers compute in bf16 from fp32 weights; xtuner's deepspeed_zero2 (bf16) loses the
    small ones (ZeRO-2 ignores data_types.grad_accum_dtype), which is what this test would see of it."""
    import importlib.util
    import socket
    import subprocess
    import sys

    if importlib.util.find_spec("deepspeed") is None:
        pytest.skip("DeepSpeed is not installed (bash tools/install.sh deepspeed)")
    if json_name == "zero2_bf16.json":
        path = CONFIG_DIR / "deepspeed" / json_name
    else:  # xtuner's JSON, as its train.py resolves "auto" on a bf16 device
        import xtuner

        data = json.loads((Path(xtuner.__file__).parent / "configs/deepspeed/deepspeed_zero2.json").read_text())
        data["fp16"]["enabled"], data["bf16"]["enabled"] = False, True
        path = tmp_path / "deepspeed_zero2.json"
        path.write_text(json.dumps(data))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = subprocess.run([sys.executable, str(ROOT / "tests/engine/deepspeed_dtype_worker.py"), str(path),
                          str(tiny_models), str(port)], capture_output=True, text=True, timeout=600, cwd=ROOT)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    if json_name == "zero2_bf16.json":
        assert report["accumulated_master"] == pytest.approx(0.7477455, abs=1e-6)  # 1 - (0.25 + 3 x 7.5e-4)
        assert report["trainable"] == ["torch.float32"] and report["frozen"] == ["torch.bfloat16"]
        assert all(dtypes == ["torch.bfloat16"] for dtypes in report["outputs"].values())
    else:
        assert report["accumulated_master"] == 0.75  # the three small gradients rounded away
