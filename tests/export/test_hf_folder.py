"""videoccam/export/hf_folder.py: the single folder's files, its chat, and loading it without the project."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import torch
from safetensors import safe_open

from tests.conftest import isolated_env, isolated_python_path
from tests.export.helpers import (
    MAX_NEW_TOKENS,
    STAGE2,
    conversation,
    frames,
    training_batch,
)


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


def test_tied_word_embeddings_are_saved_once_and_tied_again(tiny_models, tmp_path):
    """Small Qwen2.5 models tie lm_head to the input embeddings: safetensors gets one copy, loading re-ties it."""
    from mmengine.config import Config
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM
    from xtuner.registry import BUILDER

    from tests.export.helpers import model_cfg_options
    from videoccam.export.hf_folder import save_hf_folder

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


def test_bf16_model_trained_in_fp32_exports_the_dtype_asked_for(tiny_models, tmp_path):
    """bf16 towers: the projector trains in fp32 (issue 9) but the exports still write what the user asks for:
    the loaded dtype (bf16) by default, float32 with ``dtype``/``fp32`` (then the fp32 weights, unrounded)."""
    from mmengine.config import Config
    from xtuner.registry import BUILDER

    from tests.export.helpers import model_cfg_options
    from videoccam.export.hf_folder import save_hf_folder
    from videoccam.export.xtuner_layout import save_xtuner_layout

    cfg = Config.fromfile(str(STAGE2))
    cfg.merge_from_dict({**model_cfg_options(tiny_models), "model.llm.torch_dtype": "torch.bfloat16",
                         "model.visual_encoder.torch_dtype": "torch.bfloat16"})
    torch.manual_seed(0)
    model = BUILDER.build(cfg.model).eval()
    queries = model.projector.queries.detach()
    assert queries.dtype == torch.float32

    def dtypes(path) -> dict[str, set]:
        out: dict[str, set] = {}
        for file in path.glob("*.safetensors"):
            with safe_open(str(file), "pt") as f:
                for key in f.keys():
                    out.setdefault(key.split(".")[0], set()).add(f.get_tensor(key).dtype)
        return out

    save_hf_folder(model, cfg, tmp_path / "default")
    assert dtypes(tmp_path / "default") == {part: {torch.bfloat16} for part in ("llm", "visual_encoder", "projector")}
    assert json.loads((tmp_path / "default/config.json").read_text())["torch_dtype"] == "bfloat16"
    save_hf_folder(model, cfg, tmp_path / "fp32", dtype=torch.float32)
    assert dtypes(tmp_path / "fp32") == {part: {torch.float32} for part in ("llm", "visual_encoder", "projector")}
    with safe_open(str(tmp_path / "fp32/model.safetensors"), "pt") as f:
        torch.testing.assert_close(f.get_tensor("projector.queries"), queries, rtol=0, atol=0)

    save_xtuner_layout(model, cfg, tmp_path / "xtuner")
    save_xtuner_layout(model, cfg, tmp_path / "xtuner_fp32", fp32=True)
    assert set().union(*dtypes(tmp_path / "xtuner/projector").values()) == {torch.bfloat16}
    assert set().union(*dtypes(tmp_path / "xtuner_fp32/projector").values()) == {torch.float32}
    assert model.projector.queries.dtype == torch.float32  # the training model is left as it was
