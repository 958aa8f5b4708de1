"""Export of a trained VideoCCAMModel: single Hugging Face folder round trip, isolation, xtuner layout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from tests.conftest import ROOT
from tests.model.export_helpers import (
    STAGE2,
    as_cli_options,
    build_trained,
    conversation,
    frames,
    isolated_env,
    isolated_python_path,
    training_batch,
    training_greedy,
    training_prompt_ids,
)

KINDS = {"video": 6, "image": 1, "text": 0}
MAX_NEW_TOKENS = 6


@pytest.fixture(scope="module")
def trained(tiny_models, tmp_path_factory):
    return build_trained(tiny_models, tmp_path_factory.mktemp("export_ckpt"))


@pytest.fixture(scope="module")
def hf_dir(trained, tmp_path_factory):
    from videoccam.model.export import save_hf_folder

    out = tmp_path_factory.mktemp("export_hf") / "videoccam_tiny_export"
    files = save_hf_folder(trained.model, trained.cfg, out, save_pretrained_kwargs={"max_shard_size": "5GB"})
    assert out / "model.safetensors" in files
    return out


@pytest.fixture(scope="module")
def loaded(hf_dir):
    from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(hf_dir, trust_remote_code=True).eval()
    return model, AutoTokenizer.from_pretrained(hf_dir), AutoImageProcessor.from_pretrained(hf_dir)


def _media(kind: str, image_processor, seed: int = 0):
    items = frames(KINDS[kind], seed) if KINDS[kind] else None
    pixel_values = image_processor(items, return_tensors="pt")["pixel_values"] if items else None
    return items, pixel_values


def _inference_ids(kind: str, tokenizer, model) -> list[int]:
    from videoccam.model.modeling_videoccam import tokenize_with_media

    text = tokenizer.apply_chat_template(conversation(kind), tokenize=False, add_generation_prompt=True)
    return tokenize_with_media(text, tokenizer, model.config.media_tokens, model.config.image_token_index)


# ----------------------------------------------------------------------------------------------------------------
# The folder's files
# ----------------------------------------------------------------------------------------------------------------
def test_folder_layout_and_config(hf_dir, trained):
    for name in ("config.json", "generation_config.json", "preprocessor_config.json", "tokenizer_config.json",
                 "configuration_videoccam.py", "modeling_videoccam.py", "ccam_projector.py", "model.safetensors"):
        assert (hf_dir / name).is_file(), name
    config = json.loads((hf_dir / "config.json").read_text())
    assert config["model_type"] == "videoccam"
    assert config["auto_map"] == {
        "AutoConfig": "configuration_videoccam.VideoCCAMConfig",
        "AutoModel": "modeling_videoccam.VideoCCAMForCausalLM",
        "AutoModelForCausalLM": "modeling_videoccam.VideoCCAMForCausalLM",
    }
    assert config["text_config"]["model_type"] == "qwen2" and config["text_config"]["use_cache"] is True
    assert config["vision_config"]["model_type"] == "siglip_vision_model"
    assert config["projector_config"]["num_queries"] == trained.cfg.num_queries
    assert config["visual_select_layer"] == trained.model.visual_select_layer
    assert config["vision_chunk_size"] == trained.model.vision_chunk_size
    with safe_open(str(hf_dir / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert not [k for k in keys if "lora_" in k or "base_layer" in k]  # merged, no adapter left
    assert {k.split(".")[0] for k in keys} == {"llm", "visual_encoder", "projector"}


def test_generation_config_and_tokenizer(loaded, trained):
    model, tokenizer, _ = loaded
    stop_ids = [tokenizer.convert_tokens_to_ids(w) for w in trained.template["STOP_WORDS"]]
    assert model.generation_config.eos_token_id == stop_ids
    assert model.generation_config.pad_token_id == tokenizer.pad_token_id
    for token in ("<image>", "<video>"):
        assert token in tokenizer.get_vocab()
        assert len(tokenizer.encode(token, add_special_tokens=False)) == 1
    # the media ids are never embedded, so the LLM's embeddings were not resized
    assert model.get_input_embeddings().weight.shape[0] == trained.model.llm.get_input_embeddings().weight.shape[0]


@pytest.mark.parametrize("kind", list(KINDS))
def test_chat_template_reproduces_training_prompt_ids(loaded, trained, kind):
    model, tokenizer, _ = loaded
    expected = training_prompt_ids(kind, trained.tokenizer, trained.template, trained.cfg.num_queries)
    assert _inference_ids(kind, tokenizer, model) == expected


def test_prepare_tokenizer_adds_missing_media_tokens_only():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    from xtuner.utils import PROMPT_TEMPLATE

    from videoccam.model.export import make_generation_config, prepare_tokenizer

    vocab = {w: i for i, w in enumerate(["[UNK]", "</s>", "<s>", "hello", "world", "USER:", "ASSISTANT:"])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    plain = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", eos_token="</s>", bos_token="<s>")
    prepared = prepare_tokenizer(plain, PROMPT_TEMPLATE.vicuna)
    assert "<image>" not in plain.get_vocab()  # the original is untouched
    assert prepared.encode("hello world", add_special_tokens=False) == plain.encode("hello world",
                                                                                   add_special_tokens=False)
    assert {"<image>", "<video>"} <= set(prepared.additional_special_tokens)
    assert prepared.convert_tokens_to_ids("<image>") >= len(vocab)
    # vicuna has no SUFFIX_AS_EOS: every answer ends with the EOS token, and the next turn starts with BOS
    text = prepared.apply_chat_template(
        [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "world"},
         {"role": "user", "content": "hello"}], tokenize=False, add_generation_prompt=True)
    assert text == "<s>USER: hello ASSISTANT:world</s>\n<s>USER: hello ASSISTANT:"
    assert make_generation_config(prepared, PROMPT_TEMPLATE.vicuna).eos_token_id == [vocab["</s>"]]


@pytest.mark.parametrize("llm, template", [("phi3", "phi3_chat"), ("phi3", "vicuna"), ("qwen2", "qwen_chat")])
def test_chat_template_matches_training_with_bos_system_and_history(tiny_models, llm, template):
    """Multi-turn + system prompt, with a BOS-adding tokenizer (phi3) and a template that ends answers with EOS."""
    import copy

    from transformers import AutoTokenizer
    from xtuner.dataset.map_fns import template_map_fn
    from xtuner.dataset.utils import encode_fn
    from xtuner.utils import PROMPT_TEMPLATE

    from videoccam.constants import IGNORE_INDEX
    from videoccam.model.export import prepare_tokenizer
    from videoccam.model.modeling_videoccam import tokenize_with_media

    tokenizer = AutoTokenizer.from_pretrained(tiny_models / llm)
    tmpl = PROMPT_TEMPLATE[template]
    turns = [{"system": "You watch videos.", "input": "<image>\nWhat moves?", "output": "A red square."},
             {"input": "And then?", "output": "A blue circle."}]
    example = template_map_fn({"conversation": copy.deepcopy(turns)}, tmpl)
    tokens = encode_fn(example, tokenizer, 10**6, with_image_token=True)
    labels = tokens["labels"]
    # the prompt of turn 2 = everything before its first supervised token
    starts = [i for i in range(len(labels)) if labels[i] != IGNORE_INDEX and (i == 0 or labels[i - 1] == IGNORE_INDEX)]
    expected = tokens["input_ids"][: starts[-1]]

    prepared = prepare_tokenizer(tokenizer, tmpl)
    messages = [{"role": "system", "content": "You watch videos."},
                {"role": "user", "content": "<video>\nWhat moves?"}, {"role": "assistant", "content": "A red square."},
                {"role": "user", "content": "And then?"}]
    text = prepared.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert tokenize_with_media(text, prepared, ["<image>", "<video>"]) == expected


# ----------------------------------------------------------------------------------------------------------------
# Round trip: training model (config + checkpoint) == converted folder
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", list(KINDS))
def test_round_trip_logits_and_greedy_tokens(loaded, trained, kind):
    model, tokenizer, image_processor = loaded
    items, pixel_values = _media(kind, image_processor)
    ids = _inference_ids(kind, tokenizer, model)
    with torch.no_grad():
        reference = trained.model(training_batch(ids, pixel_values), mode="tensor")
        num_frames = None if pixel_values is None else [pixel_values.shape[0]]
        logits = model(input_ids=torch.tensor([ids]), pixel_values=pixel_values, num_frames=num_frames).logits
    assert logits.shape == reference.shape
    if kind != "text":
        assert logits.shape[1] == len(ids) - 1 + trained.cfg.num_queries
    torch.testing.assert_close(logits, reference, atol=1e-4, rtol=0)

    eos = model.generation_config.eos_token_id
    expected = training_greedy(trained.model, ids, pixel_values, eos, MAX_NEW_TOKENS)
    generated = model.generate(
        input_ids=torch.tensor([ids]), pixel_values=pixel_values, num_frames=num_frames,
        max_new_tokens=MAX_NEW_TOKENS, do_sample=False,
    )[0].tolist()
    assert generated[: len(expected)] == expected
    assert all(t == model.generation_config.pad_token_id for t in generated[len(expected):])
    reply = model.chat([conversation(kind)], [items], tokenizer, image_processor, max_new_tokens=MAX_NEW_TOKENS)
    assert reply == [tokenizer.decode(expected, skip_special_tokens=True).strip()]


def test_adapters_matter(trained, loaded):
    """Guard against a vacuous round trip: without the trained LoRA / projector the logits differ."""
    model, tokenizer, image_processor = loaded
    _, pixel_values = _media("video", image_processor)
    ids = _inference_ids("video", tokenizer, model)
    with torch.no_grad():
        reference = trained.model(training_batch(ids, pixel_values), mode="tensor")
        with trained.model.llm.disable_adapter():
            no_llm_lora = trained.model(training_batch(ids, pixel_values), mode="tensor")
    assert (reference - no_llm_lora).abs().max() > 1e-2


def test_batched_chat_with_different_frame_counts_equals_unbatched(loaded):
    model, tokenizer, image_processor = loaded
    batch = [("video", frames(6, 1)), ("image", frames(1, 2)), ("text", None), ("video", frames(3, 3))]
    messages = [conversation(kind) for kind, _ in batch]
    images = [items for _, items in batch]
    together = model.chat(messages, images, tokenizer, image_processor, max_new_tokens=MAX_NEW_TOKENS)
    alone = [model.chat([m], [i], tokenizer, image_processor, max_new_tokens=MAX_NEW_TOKENS)[0]
             for m, i in zip(messages, images)]
    assert together == alone
    assert len(set(alone)) > 1  # the media change the answers


def test_in_memory_conversion_equals_folder(trained, loaded):
    """load_model(config=, checkpoint=) converts without touching disk and gives the folder's model."""
    from videoccam.inference import load_model
    from videoccam.model import build_hf_from_checkpoint

    model, tokenizer, image_processor = loaded
    mem_model, mem_tokenizer, mem_processor = load_model(
        config=str(STAGE2), checkpoint=str(trained.checkpoint), cfg_options=trained.options
    )
    assert type(mem_model).__name__ == "VideoCCAMForCausalLM"
    assert mem_tokenizer.chat_template == tokenizer.chat_template
    assert mem_model.generation_config.eos_token_id == model.generation_config.eos_token_id
    items, pixel_values = _media("video", image_processor, seed=5)
    ids = _inference_ids("video", tokenizer, model)
    with torch.no_grad():
        a = model(input_ids=torch.tensor([ids]), pixel_values=pixel_values, num_frames=[6]).logits
        b = mem_model(input_ids=torch.tensor([ids]), pixel_values=pixel_values, num_frames=[6]).logits
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    assert mem_model.chat([conversation("video")], [items], mem_tokenizer, mem_processor, max_new_tokens=4) == \
        model.chat([conversation("video")], [items], tokenizer, image_processor, max_new_tokens=4)
    assert callable(build_hf_from_checkpoint)
    with pytest.raises(ValueError, match="either model_path"):
        load_model()


def test_export_leaves_the_training_model_unchanged(trained):
    from videoccam.model.export import build_hf_model, prepare_tokenizer

    before = {k: v.clone() for k, v in trained.model.state_dict().items()}
    base = trained.model.llm.get_base_model().model.layers[0].self_attn.q_proj
    base_weight = base.base_layer.weight.clone()
    build_hf_model(trained.model, trained.template, prepare_tokenizer(trained.tokenizer, trained.template))
    assert not base.merged
    torch.testing.assert_close(base.base_layer.weight, base_weight, rtol=0, atol=0)
    for key, value in trained.model.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)


# ----------------------------------------------------------------------------------------------------------------
# The folder in a fresh interpreter without the project
# ----------------------------------------------------------------------------------------------------------------
def test_folder_loads_and_chats_without_the_project(hf_dir, loaded, tmp_path):
    model, tokenizer, image_processor = loaded
    video, image = frames(5, 11), frames(1, 12)
    for i, frame in enumerate(video):
        frame.save(tmp_path / f"v{i}.png")
    image[0].save(tmp_path / "image.png")
    messages = [conversation("video"), conversation("image"), conversation("text")]
    expected = model.chat(messages, [video, image, None], tokenizer, image_processor, max_new_tokens=MAX_NEW_TOKENS)
    script = textwrap.dedent(
        """
        import importlib.util, json, sys
        sys.path.extend(PATHS)
        assert importlib.util.find_spec("videoccam") is None, "videoccam is importable; the test is not isolated"
        import torch
        from PIL import Image
        from transformers import AutoImageProcessor, AutoModel, AutoTokenizer
        model = AutoModel.from_pretrained(FOLDER, trust_remote_code=True, torch_dtype=torch.float32).eval()
        tokenizer = AutoTokenizer.from_pretrained(FOLDER)
        image_processor = AutoImageProcessor.from_pretrained(FOLDER)
        video = [Image.open(f"v{i}.png").convert("RGB") for i in range(5)]
        image = [Image.open("image.png").convert("RGB")]
        replies = model.chat(MESSAGES, [video, image, None], tokenizer, image_processor,
                             max_new_tokens=MAX_NEW, do_sample=False)
        assert not [m for m in sys.modules if m.split(".")[0] == "videoccam"], "videoccam was imported"
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        print("REPLIES" + json.dumps(replies))
        """
    )
    script = (script.replace("PATHS", repr(isolated_python_path())).replace("FOLDER", repr(str(hf_dir)))
              .replace("MESSAGES", repr(messages)).replace("MAX_NEW", str(MAX_NEW_TOKENS)))
    result = subprocess.run([sys.executable, "-S", "-c", script], cwd=tmp_path, env=isolated_env(tmp_path),
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    replies = json.loads(result.stdout.split("REPLIES", 1)[1])
    assert replies == expected


# ----------------------------------------------------------------------------------------------------------------
# xtuner layout through the real `xtuner convert pth_to_hf`
# ----------------------------------------------------------------------------------------------------------------
def test_xtuner_pth_to_hf_writes_adapters_and_standalone_projector(trained, tmp_path):
    venv_bin = Path(sys.executable).parent
    xtuner = venv_bin / "xtuner"
    if not xtuner.exists():
        pytest.fail(f"the xtuner CLI is not installed next to {sys.executable}; run `bash tools/install.sh`")
    out = tmp_path / "xtuner_layout"
    env = dict(os.environ, PATH=f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}", OMP_NUM_THREADS="1")
    cmd = [str(xtuner), "convert", "pth_to_hf", str(STAGE2), str(trained.checkpoint), str(out), "--fp32",
           "--cfg-options", *as_cli_options(trained.options)]
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    log = f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
    # the CLI exits 0 even on failure: check the artefacts
    assert (out / "llm_adapter" / "adapter_config.json").is_file(), log
    assert (out / "visual_encoder_adapter" / "adapter_config.json").is_file(), log
    assert (out / "projector" / "config.json").is_file(), log
    assert (out / "projector" / "ccam_projector.py").is_file(), log
    assert not (out / "config.json").exists()  # frozen LLM with LoRA: no full LLM copy

    # the saved adapter holds the trained LoRA weights
    adapter_files = list((out / "llm_adapter").glob("adapter_model.*"))
    assert adapter_files, log

    # projector/ loads alone, in a fresh interpreter without the project, and computes the trained projector
    projector = trained.model.projector
    features = torch.randn(7, 16, projector.config.cross_hidden_size, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = projector(features, [4, 3])
    torch.save({"x": features, "expected": expected}, tmp_path / "io.pt")
    script = textwrap.dedent(
        """
        import importlib.util, sys
        sys.path.extend(PATHS)
        assert importlib.util.find_spec("videoccam") is None
        import torch
        from transformers import AutoModel
        model = AutoModel.from_pretrained(FOLDER, trust_remote_code=True).eval()
        io = torch.load("io.pt")
        with torch.no_grad():
            out = model(io["x"], [4, 3])
        torch.testing.assert_close(out, io["expected"], rtol=0, atol=1e-6)
        print("OK", type(model).__module__)
        """
    ).replace("PATHS", repr(isolated_python_path())).replace("FOLDER", repr(str(out / "projector")))
    result = subprocess.run([sys.executable, "-S", "-c", script], cwd=tmp_path, env=isolated_env(tmp_path),
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert "OK transformers_modules" in result.stdout


def test_xtuner_layout_adapters_reproduce_the_training_model(trained, tmp_path):
    """The adapters written by save_xtuner_layout (fp32) load back with peft onto the base models."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, SiglipVisionModel

    from videoccam.model.export import save_xtuner_layout

    written = save_xtuner_layout(trained.model, trained.cfg, tmp_path, fp32=True)
    assert {p.name for p in written} == {"llm_adapter", "visual_encoder_adapter", "projector"}
    base = AutoModelForCausalLM.from_pretrained(trained.options["model.llm.pretrained_model_name_or_path"])
    llm = PeftModel.from_pretrained(base, tmp_path / "llm_adapter").eval()
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        torch.testing.assert_close(llm(input_ids=ids).logits, trained.model.llm(input_ids=ids).logits)
    vision = PeftModel.from_pretrained(
        SiglipVisionModel.from_pretrained(trained.options["model.visual_encoder.pretrained_model_name_or_path"]),
        tmp_path / "visual_encoder_adapter",
    ).eval()
    pixels = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(
            vision(pixels).last_hidden_state, trained.model.visual_encoder(pixels).last_hidden_state
        )
    # default precision follows xtuner: the LLM adapter in float16; the model itself is not cast
    save_xtuner_layout(trained.model, trained.cfg, tmp_path / "fp16")
    with safe_open(str(tmp_path / "fp16" / "llm_adapter" / "adapter_model.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    assert trained.model.llm.get_base_model().dtype == torch.float32


def test_huggingface_format_on_meta_weights_points_to_the_tool(trained, tmp_path):
    """`xtuner convert pth_to_hf --save-format huggingface` builds the model on the meta device: clear error."""
    from accelerate import init_empty_weights
    from xtuner.registry import BUILDER

    with init_empty_weights(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*non-meta.*", category=UserWarning)  # as pth_to_hf does
        meta_model = BUILDER.build(trained.cfg.model)
    with pytest.raises(ValueError, match="tools/convert_to_hf.py"):
        meta_model.to_hf(cfg=trained.cfg, save_dir=str(tmp_path / "out"), save_format="huggingface")
    assert not (tmp_path / "out" / "config.json").exists()


def test_tied_word_embeddings_are_saved_once_and_tied_again(tiny_models, tmp_path):
    """Small Qwen2.5 models tie lm_head to the input embeddings: safetensors gets one copy, loading re-ties it."""
    from mmengine.config import Config
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM
    from xtuner.registry import BUILDER

    from tests.model.export_helpers import model_cfg_options
    from videoccam.model.export import save_hf_folder

    config = AutoConfig.from_pretrained(tiny_models / "qwen2")
    config.tie_word_embeddings = True
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path / "qwen2_tied")
    options = model_cfg_options(tiny_models)
    options["model.llm.pretrained_model_name_or_path"] = str(tmp_path / "qwen2_tied")
    cfg = Config.fromfile(str(STAGE2))
    cfg.merge_from_dict(options)
    model = BUILDER.build(cfg.model).eval()
    llm = model.llm.get_base_model()
    assert llm.lm_head.weight.data_ptr() == llm.model.embed_tokens.weight.data_ptr()

    out = tmp_path / "videoccam_tied"
    save_hf_folder(model, cfg, out)
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        assert "llm.lm_head.weight" not in f.keys() and "llm.model.embed_tokens.weight" in f.keys()
    loaded = AutoModel.from_pretrained(out, trust_remote_code=True).eval()
    assert loaded.llm.lm_head.weight.data_ptr() == loaded.llm.model.embed_tokens.weight.data_ptr()
    pixel_values = torch.randn(3, 3, 64, 64)
    ids = [5, 6, -200, 7]
    with torch.no_grad():
        torch.testing.assert_close(
            loaded(input_ids=torch.tensor([ids]), pixel_values=pixel_values, num_frames=[3]).logits,
            model(training_batch(ids, pixel_values), mode="tensor"),
            atol=1e-4, rtol=0,
        )


def test_xtuner_layout_of_unfrozen_towers_without_lora(tiny_models, tmp_path):
    """Full fine-tuning (no LoRA): the LLM + tokenizer go to the folder itself, SigLIP to visual_encoder/."""
    from mmengine.config import Config
    from transformers import AutoModelForCausalLM, AutoTokenizer, SiglipImageProcessor, SiglipVisionModel
    from xtuner.registry import BUILDER

    from tests.model.export_helpers import model_cfg_options
    from videoccam.model.export import resolve_template, save_xtuner_layout

    cfg = Config.fromfile(str(ROOT / "configs/tiny/videoccam_tiny_qwen2_stage1.py"))
    cfg.merge_from_dict({**model_cfg_options(tiny_models), "model.freeze_llm": False,
                         "model.freeze_visual_encoder": False})
    model = BUILDER.build(cfg.model).eval()
    written = save_xtuner_layout(model, cfg, tmp_path)
    assert {p.name for p in written} == {tmp_path.name, "visual_encoder", "projector"}
    llm = AutoModelForCausalLM.from_pretrained(tmp_path, torch_dtype=torch.float32)
    torch.testing.assert_close(llm.model.embed_tokens.weight, model.llm.model.embed_tokens.weight.half().float())
    assert AutoTokenizer.from_pretrained(tmp_path).eos_token == "<|im_end|>"
    vision = SiglipVisionModel.from_pretrained(tmp_path / "visual_encoder")
    torch.testing.assert_close(vision.state_dict(), model.visual_encoder.state_dict())
    assert SiglipImageProcessor.from_pretrained(tmp_path / "visual_encoder").size == {"height": 64, "width": 64}
    # a config dumped by mmengine stores the template as its import path
    assert resolve_template("xtuner.utils.PROMPT_TEMPLATE.qwen_chat") == resolve_template("qwen_chat")
    with pytest.raises(ValueError, match="unknown prompt template"):
        resolve_template("no_such_template")
