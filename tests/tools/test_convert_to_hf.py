"""tools/convert_to_hf.py: config + checkpoint (file or work dir) -> single folder or xtuner layout."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from tests.conftest import load_tool, write_malicious_checkpoint
from tests.export.helpers import (
    STAGE2,
    as_cli_options,
    build_trained,
    conversation,
    frames,
    training_batch,
)


@pytest.fixture(scope="module")
def trained(tiny_models, tmp_path_factory):
    return build_trained(tiny_models, tmp_path_factory.mktemp("convert_ckpt"))


def _convert(trained, checkpoint, out, *extra: str) -> int:
    return load_tool("convert_to_hf").main(
        [str(STAGE2), str(checkpoint), str(out), *extra, "--cfg-options", *as_cli_options(trained.options)]
    )


def test_a_checkpoint_that_would_run_code_is_refused_and_nothing_is_written(trained, tmp_path, capsys):
    """The file names os.system in its pickle (next to real weights): refused, named, its payload never runs."""
    marker = tmp_path / "payload_ran"
    evil = write_malicious_checkpoint(tmp_path / "iter_2.pth", marker, {"state_dict": trained.model.state_dict()})
    assert _convert(trained, evil, tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert f"error: refusing to load checkpoint '{evil}': it needs the global posix.system" in err, err
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_work_dir_to_single_folder_reproduces_the_training_model(trained, tmp_path, capsys):
    from videoccam.inference.load import load_model
    from videoccam.model.hf.modeling_videoccam import tokenize_with_media

    work_dir = trained.checkpoint.parent
    (work_dir / "last_checkpoint").write_text(str(trained.checkpoint))
    out = tmp_path / "tiny_hf"
    assert _convert(trained, work_dir, out) == 0
    printed = capsys.readouterr().out
    assert "model.safetensors" in printed and "config.json" in printed and "tools/chat.py --model" in printed

    model, tokenizer, image_processor = load_model(str(out))
    items = frames(4, 7)
    pixel_values = image_processor(items, return_tensors="pt")["pixel_values"]
    text = tokenizer.apply_chat_template(conversation("video"), tokenize=False, add_generation_prompt=True)
    ids = tokenize_with_media(text, tokenizer, model.config.media_tokens)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids]), pixel_values=pixel_values, num_frames=[4]).logits
        reference = trained.model(training_batch(ids, pixel_values), mode="tensor")
    torch.testing.assert_close(logits, reference, atol=1e-4, rtol=0)
    assert model.chat([conversation("video")], [items], tokenizer, image_processor, max_new_tokens=4)


def test_bfloat16_sharded_folder(trained, tmp_path):
    from transformers import AutoModel

    out = tmp_path / "tiny_hf_bf16"
    assert _convert(trained, trained.checkpoint, out) == 0
    assert (out / "model.safetensors").is_file()
    # converting again into the same folder replaces the weights: no stale single file next to the shards
    assert _convert(trained, trained.checkpoint, out, "--dtype", "bfloat16", "--max-shard-size", "200KB") == 0
    index = json.loads((out / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1 and not (out / "model.safetensors").exists()
    for shard in shards:
        with safe_open(str(out / shard), "pt") as f:
            assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.bfloat16}
    config = json.loads((out / "config.json").read_text())
    assert config["torch_dtype"] == "bfloat16" and config["text_config"]["torch_dtype"] == "bfloat16"
    model = AutoModel.from_pretrained(out, trust_remote_code=True, torch_dtype="auto")
    assert model.dtype == torch.bfloat16
    # every tensor came from the shards (nothing left randomly initialised)
    for name, value in model.state_dict().items():
        with safe_open(str(out / index["weight_map"][name]), "pt") as f:
            torch.testing.assert_close(value, f.get_tensor(name), rtol=0, atol=0)


def test_xtuner_layout(trained, tmp_path):
    out = tmp_path / "xtuner_layout"
    assert _convert(trained, trained.checkpoint, out, "--save-format", "xtuner", "--fp32") == 0
    assert (out / "llm_adapter" / "adapter_model.safetensors").is_file()
    assert (out / "visual_encoder_adapter" / "adapter_model.safetensors").is_file()
    assert (out / "projector" / "model.safetensors").is_file()
    assert (out / "projector" / "ccam_projector.py").is_file()


def test_errors(trained, tmp_path, capsys):
    assert _convert(trained, tmp_path / "missing.pth", tmp_path / "out") == 1
    assert "checkpoint not found" in capsys.readouterr().err
    bf16_xtuner = ["--save-format", "xtuner", "--dtype", "bfloat16"]
    assert _convert(trained, trained.checkpoint, tmp_path / "out", *bf16_xtuner) == 1
    assert "float16 (default) or float32" in capsys.readouterr().err
    foreign = tmp_path / "foreign.pth"
    torch.save({"state_dict": {"projector.no_such_weight": torch.zeros(1)}}, foreign)
    assert _convert(trained, foreign, tmp_path / "out") == 1
    assert "no place in this model" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_upstream_web_demo_calls_run_on_the_converted_folder_without_the_project(tiny_hf_videoccam, tiny_hf_demo):
    """Upstream's web_demo.py call sequence (two turns through the cache, then one message with two videos) on a
    folder written by tools/convert_to_hf.py, in a process where videoccam cannot be imported (tiny_hf_demo)."""
    from tests.tools.conftest import check_demo_turns

    result = tiny_hf_demo
    config = json.loads((tiny_hf_videoccam / "config.json").read_text())
    check_demo_turns(result, config["projector_config"]["num_queries"])
    assert any(turn["output_ids"] for turn in result["turns"])
