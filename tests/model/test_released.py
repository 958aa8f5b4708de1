"""videoccam/model/released.py: fine-tuning starts from a released Video-CCAM model through the release's own code.

On each tiny replica (tools/make_released_replicas.py: remote code that is not this project's, with other class,
parameter and config field names): loading it our way (the tiny fine-tuning configs) gives the logits of loading
it the upstream way (fp32, 1e-5) and every released tensor is present, unchanged; 20 iterations of fine-tuning on
data/example; the export to the released layout loads the upstream way and gives the training model's logits
(1e-4), with the released projector's own parameter names.
"""

from __future__ import annotations

import pytest
import torch
from mmengine.config import Config
from safetensors.torch import load_file
from xtuner.registry import BUILDER

from tests.conftest import RELEASED_CONFIGS, load_tool, released_options
from tests.export.helpers import frames, training_batch
from tests.model.upstream_v1_0 import UpstreamVideoCCAMv10
from videoccam.export.lora_merge import merged_state_dict
from videoccam.model.hf.ccam_projector import CCAMProjector
from videoccam.model.hf.constants import IMAGE_TOKEN_INDEX
from videoccam.model.released import adapter_state, find_parts

PROMPT = [5, 6, IMAGE_TOKEN_INDEX, 7, 8, IMAGE_TOKEN_INDEX, 9]  # two media items: a 3-frame video and an image


def _build(version: str, replicas) -> torch.nn.Module:
    cfg = Config.fromfile(str(RELEASED_CONFIGS[version]))
    cfg.merge_from_dict(released_options(replicas, version))
    return BUILDER.build(cfg.model).eval()


def _pixels(image_processor_path) -> torch.Tensor:
    from transformers import AutoImageProcessor

    processor = AutoImageProcessor.from_pretrained(str(image_processor_path))
    return processor(frames(4, 3), return_tensors="pt")["pixel_values"]


def _same(actual: dict, expected: dict, what: str) -> None:
    assert sorted(actual) == sorted(expected), what
    for name, value in expected.items():
        torch.testing.assert_close(actual[name], value, rtol=0, atol=0, msg=f"{what}: {name}")


def _base_weights(peft_model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The base model's own tensors inside a PEFT model, under the base model's names."""
    base = peft_model.get_base_model()
    return {name.replace(".base_layer", ""): t for name, t in base.state_dict().items() if "lora_" not in name}


# ----------------------------------------------------------------------------------------------------------------
# v1.0 / v1.1: xtuner's layout
# ----------------------------------------------------------------------------------------------------------------
def test_v1_0_loads_as_upstream_loads_it_with_every_released_tensor(released_replicas):
    from transformers import AutoModelForCausalLM, SiglipVisionModel

    release, base = released_replicas["v1_0"], released_replicas["base"]
    model = _build("v1_0", released_replicas)
    # the released projector, through its own code: not the project's class, its own parameter names
    assert type(model.projector).__name__ == "CCAMModel" and not isinstance(model.projector, CCAMProjector)
    assert type(model.projector).__module__.startswith("transformers_modules")
    # every released tensor, unchanged: adapters, projector, and the base models they adapt
    _same(dict(adapter_state(model.llm)), load_file(release / "llm_adapter/adapter_model.safetensors"), "llm_adapter")
    _same(dict(adapter_state(model.visual_encoder)),
          load_file(release / "visual_encoder_adapter/adapter_model.safetensors"), "visual_encoder_adapter")
    _same(model.projector.state_dict(), load_file(release / "projector/model.safetensors"), "projector")
    _same(_base_weights(model.llm), AutoModelForCausalLM.from_pretrained(base / "qwen2").state_dict(), "base LLM")
    _same(_base_weights(model.visual_encoder), SiglipVisionModel.from_pretrained(base / "siglip").state_dict(),
          "base SigLIP")  # fmt: skip
    # what trains: the released adapters (those that reach hidden_states[-2]) and the projector, nothing new
    trainable = model.trainable_parameter_names()
    assert {n.split(".")[0] for n in trainable} == {"llm", "visual_encoder", "projector"}
    assert all("lora_" in n for n in trainable if not n.startswith("projector."))
    assert not any("head" in n or "layers.1." in n for n in trainable if n.startswith("visual_encoder."))
    assert sum(n.startswith("projector.") for n in trainable) == len(model.projector.state_dict())

    upstream = UpstreamVideoCCAMv10(str(release), str(base / "qwen2"), str(base / "siglip"))
    pixel_values = _pixels(base / "siglip")
    with torch.no_grad():
        ours = model(dict(training_batch(PROMPT, pixel_values), num_frames=[3, 1]), mode="tensor")
    theirs = upstream.logits(PROMPT, pixel_values, [3, 1])
    assert ours.shape == theirs.shape == (1, len(PROMPT) - 2 + 2 * 16, theirs.shape[-1])
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


def test_v1_0_finetune_exports_the_released_layout(released_replicas, released_v10_finetuned, tmp_path):
    from videoccam.inference.load import load_trained_model

    tuned = released_v10_finetuned
    assert len(tuned.losses) == 20 and tuned.losses[-1] < tuned.losses[0]
    release, base = released_replicas["v1_0"], released_replicas["base"]
    out = tmp_path / "released_layout"
    options = [f"{k}={v}" for k, v in tuned.options.items()]
    convert = load_tool("convert_to_hf").main
    assert convert([str(tuned.config), str(tuned.work_dir), str(out), "--save-format", "released",
                    "--cfg-options", *options]) == 0  # fmt: skip
    # the released names, code and files
    for folder in ("llm_adapter", "visual_encoder_adapter", "projector"):
        name = "adapter_model.safetensors" if "adapter" in folder else "model.safetensors"
        exported, released = load_file(out / folder / name), load_file(release / folder / name)
        assert sorted(exported) == sorted(released), folder
        assert all(exported[k].dtype == released[k].dtype for k in released)
        assert any(not torch.equal(exported[k], released[k]) for k in released), f"{folder} did not train"
    for code in ("configuration_ccam_projector.py", "modeling_ccam_projector.py"):
        assert (out / "projector" / code).read_bytes() == (release / "projector" / code).read_bytes()

    training, _ = load_trained_model(tuned.config, tuned.checkpoint, tuned.options)
    upstream = UpstreamVideoCCAMv10(str(out), str(base / "qwen2"), str(base / "siglip"))
    pixel_values = _pixels(base / "siglip")
    with torch.no_grad():
        ours = training(dict(training_batch(PROMPT, pixel_values), num_frames=[3, 1]), mode="tensor")
    torch.testing.assert_close(upstream.logits(PROMPT, pixel_values, [3, 1]), ours, atol=1e-4, rtol=0)

    # and our single folder, with the released projector's own code beside the model's
    from transformers import AutoModel

    single = tmp_path / "single_folder"
    assert convert([str(tuned.config), str(tuned.checkpoint), str(single), "--cfg-options", *options]) == 0
    assert (single / "modeling_ccam_projector.py").is_file() and (single / "modeling_videoccam.py").is_file()
    folder_model = AutoModel.from_pretrained(single, trust_remote_code=True).eval()
    assert type(folder_model.projector).__name__ == "CCAMModel"
    assert sorted(folder_model.projector.state_dict()) == sorted(load_file(release / "projector/model.safetensors"))
    with torch.no_grad():
        logits = folder_model(input_ids=torch.tensor([PROMPT]), pixel_values=pixel_values, num_frames=[3, 1]).logits
    torch.testing.assert_close(logits, ours, atol=1e-4, rtol=0)


# ----------------------------------------------------------------------------------------------------------------
# v1.2: one folder with its own modeling code
# ----------------------------------------------------------------------------------------------------------------
def _released_v12(path):
    from transformers import AutoModel

    return AutoModel.from_pretrained(str(path), trust_remote_code=True).eval()  # how upstream loads v1.2


def _v12_prompt(released) -> list[int]:
    return [released.config.image_token_id if i == IMAGE_TOKEN_INDEX else i for i in PROMPT]


def test_v1_2_loads_as_upstream_loads_it_with_every_released_tensor(released_replicas):
    release = released_replicas["v1_2"]
    model = _build("v1_2", released_replicas)
    released = _released_v12(release)
    assert type(released).__name__ == "VideoCCAM"
    parts = find_parts(released)
    assert {role: name for role, (name, _) in parts.items()} == {
        "llm": "language_model", "visual_encoder": "vision_encoder", "projector": "mm_projector"}
    assert type(model.projector).__name__ == "CCAMModel"
    # every released tensor, unchanged (the new LoRA adapters start at zero, so merged = released)
    ours = {}
    for role, module in (("llm", model.llm), ("visual_encoder", model.visual_encoder), ("projector", model.projector)):
        ours.update((f"{parts[role][0]}.{k}", v) for k, v in merged_state_dict(module).items())
    _same(ours, load_file(release / "model.safetensors"), "v1.2 folder")
    assert model.use_llm_lora and model.use_visual_encoder_lora

    pixel_values = _pixels(release)
    with torch.no_grad():
        mine = model(dict(training_batch(PROMPT, pixel_values), num_frames=[3, 1]), mode="tensor")
        theirs = released(input_ids=torch.tensor([_v12_prompt(released)]), pixel_values=pixel_values,
                          vision_split_sizes=[3, 1]).logits  # fmt: skip
    torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=0)


def test_v1_2_finetune_exports_a_folder_that_loads_as_the_release(released_replicas, released_v12_finetuned,
                                                                  tmp_path):  # fmt: skip
    from transformers import AutoImageProcessor, AutoTokenizer

    from videoccam.inference.load import load_trained_model

    tuned = released_v12_finetuned
    assert len(tuned.losses) == 20 and tuned.losses[-1] < tuned.losses[0]
    release = released_replicas["v1_2"]
    out = tmp_path / "v1_2_export"
    assert load_tool("convert_to_hf").main([str(tuned.config), str(tuned.checkpoint), str(out), "--save-format",
                                            "released", "--cfg-options",
                                            *(f"{k}={v}" for k, v in tuned.options.items())]) == 0  # fmt: skip
    exported, released_state = load_file(out / "model.safetensors"), load_file(release / "model.safetensors")
    assert sorted(exported) == sorted(released_state)
    assert any(not torch.equal(exported[k], released_state[k]) for k in released_state if k.startswith("mm_projector."))
    for name in ("config.json", "modeling_videoccam.py", "modeling_ccam_projector.py", "tokenizer_config.json"):
        assert (out / name).read_bytes() == (release / name).read_bytes(), name

    training, _ = load_trained_model(tuned.config, tuned.checkpoint, tuned.options)
    reloaded = _released_v12(out)
    pixel_values = _pixels(release)
    with torch.no_grad():
        mine = training(dict(training_batch(PROMPT, pixel_values), num_frames=[3, 1]), mode="tensor")
        theirs = reloaded(input_ids=torch.tensor([_v12_prompt(reloaded)]), pixel_values=pixel_values,
                          vision_split_sizes=[3, 1]).logits  # fmt: skip
    torch.testing.assert_close(theirs, mine, atol=1e-4, rtol=0)
    # the release's own chat() runs on it
    tokenizer, processor = AutoTokenizer.from_pretrained(out), AutoImageProcessor.from_pretrained(out)
    replies = reloaded.chat([[{"role": "user", "content": "<video>\nWhat happens?"}]], [frames(3, 1)], tokenizer,
                            processor, max_new_tokens=3, do_sample=False)  # fmt: skip
    assert len(replies) == 1


# ----------------------------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------------------------
def test_folders_and_models_that_are_not_recognised(released_replicas, tmp_path):
    from transformers import AutoModelForCausalLM

    from videoccam.model.released import released_folder_part, released_layout, released_llm, released_projector

    with pytest.raises(FileNotFoundError, match="download the release first"):
        released_layout(tmp_path / "missing")
    (tmp_path / "weights.bin").write_text("")
    with pytest.raises(ValueError, match=r"not a released Video-CCAM model.*weights\.bin"):
        released_layout(tmp_path)
    with pytest.raises(ValueError, match="holds the v1.2 .* layout; this builder reads the v1.0/v1.1"):
        released_llm(released_replicas["v1_2"], str(released_replicas["base"] / "qwen2"))
    with pytest.raises(ValueError, match="role must be one of"):
        released_folder_part(released_replicas["v1_2"], "vision")
    with pytest.raises(ValueError, match=r"has no field\(s\) \['num_queries'\]"):
        released_projector(released_replicas["v1_0"], num_queries=8)  # the project's name, not the release's
    assert released_projector(released_replicas["v1_0"], dropout=0.1).config.dropout == 0.1

    class TwoLanguageModels(torch.nn.Module):
        def __init__(self):
            super().__init__()
            llm = AutoModelForCausalLM.from_pretrained(released_replicas["base"] / "qwen2")
            self.first, self.second, self.adapter = llm, llm, torch.nn.Linear(2, 2)

    with pytest.raises(ValueError, match=r"(?s)exactly one causal LM.*first: Qwen2ForCausalLM .* -> llm.*"
                                         r"adapter: Linear \(6 parameters\) -> projector"):  # fmt: skip
        find_parts(TwoLanguageModels())


def test_loaded_adapters_are_not_doubled(released_replicas):
    cfg = Config.fromfile(str(RELEASED_CONFIGS["v1_0"]))
    cfg.merge_from_dict(released_options(released_replicas, "v1_0"))
    from peft import LoraConfig

    cfg.model.llm_lora = dict(type=LoraConfig, r=4)
    with pytest.raises(ValueError, match="model.llm already carries PEFT adapters .* set model.llm_lora=None"):
        BUILDER.build(cfg.model)


# ----------------------------------------------------------------------------------------------------------------
# start-up runs no vision tower on the CPU (a GPU-only tower, e.g. flash-attention 2, is built on the CPU first)
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("version", ["v1_0", "v1_2"])
def test_start_up_runs_no_vision_forward_on_the_cpu(released_replicas, monkeypatch, version):
    """The released projector's call check and (v1.0) the freezing of loaded adapters that do not reach the selected
    layer must not run SigLIP on the CPU: with ``attn_implementation="flash_attention_2"`` it cannot run there. A
    tower whose attention refuses CPU tensors stands in for it; the model must build, with the same trainable set."""
    reference = set(_build(version, released_replicas).trainable_parameter_names())
    attention_classes = {type(m) for m in _build(version, released_replicas).visual_encoder.modules()
                         if type(m).__name__.startswith("Siglip") and type(m).__name__.endswith("Attention")}
    assert attention_classes

    def cpu_refusing(forward):
        def refuse(self, hidden_states, *args, **kwargs):
            if hidden_states.device.type == "cpu":
                raise RuntimeError("FlashAttention only supports CUDA tensors (stand-in)")
            return forward(self, hidden_states, *args, **kwargs)

        return refuse

    for cls in attention_classes:
        monkeypatch.setattr(cls, "forward", cpu_refusing(cls.forward))
    model = _build(version, released_replicas)
    assert set(model.trainable_parameter_names()) == reference
    if version == "v1_0":  # the adapters after hidden_states[-2] are frozen, as before
        assert not any("head" in n or "layers.1." in n for n in reference if n.startswith("visual_encoder."))
    with pytest.raises(RuntimeError, match="stand-in"):  # the stand-in does refuse a CPU forward
        model.visual_encoder(torch.zeros(1, 3, 64, 64))


def test_generate_with_a_bf16_tower_and_a_released_projector_that_does_not_cast(released_replicas):
    """``SampleAnswersHook`` asks through ``VideoCCAMModel.generate``, outside autocast: the bf16 tower's features
    must reach the fp32 released projector in its dtype even when its own code does not cast them."""
    cfg = Config.fromfile(str(RELEASED_CONFIGS["v1_0"]))
    cfg.merge_from_dict(released_options(released_replicas, "v1_0"))
    cfg.merge_from_dict({"model.visual_encoder.torch_dtype": torch.bfloat16, "model.projector.cast_inputs": False})
    model = BUILDER.build(cfg.model).eval()
    assert model.visual_encoder.dtype == torch.bfloat16 and next(model.projector.parameters()).dtype == torch.float32
    assert model.projector.config.cast_inputs is False
    pixel_values = _pixels(released_replicas["base"] / "siglip")[:3]
    prompt = torch.tensor([[5, 6, IMAGE_TOKEN_INDEX, 7]])
    tokens = model.generate(dict(input_ids=prompt, attention_mask=torch.ones_like(prompt), pixel_values=pixel_values,
                                 num_frames=[3]), max_new_tokens=3, do_sample=False)  # fmt: skip
    assert tokens.shape == (1, 3)
