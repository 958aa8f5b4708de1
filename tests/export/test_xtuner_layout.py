"""videoccam/export/xtuner_layout.py: xtuner's adapter layout, through the real `xtuner convert pth_to_hf` too."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from tests.conftest import ROOT, isolated_env, isolated_python_path, write_malicious_checkpoint
from tests.export.helpers import STAGE2, as_cli_options


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


def test_xtuner_pth_to_hf_refuses_a_checkpoint_that_would_run_code(trained, tmp_path):
    """The stock CLI (through the .pth hook) reads the file weights-only too, although xtuner asks torch not to."""
    venv_bin = Path(sys.executable).parent
    marker = tmp_path / "payload_ran"
    evil = write_malicious_checkpoint(tmp_path / "iter_2.pth", marker, {"state_dict": trained.model.state_dict()})
    out = tmp_path / "xtuner_layout"
    env = dict(os.environ, PATH=f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}", OMP_NUM_THREADS="1")
    cmd = [str(venv_bin / "xtuner"), "convert", "pth_to_hf", str(STAGE2), str(evil), str(out), "--fp32",
           "--cfg-options", *as_cli_options(trained.options)]
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert f"refusing to load checkpoint '{evil}': it needs the global posix.system" in output, output[-3000:]
    assert not marker.exists() and not (out / "projector").exists()


def test_xtuner_layout_adapters_reproduce_the_training_model(trained, tmp_path):
    """The adapters written by save_xtuner_layout (fp32) load back with peft onto the base models."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, SiglipVisionModel

    from videoccam.export.xtuner_layout import save_xtuner_layout

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


def test_xtuner_layout_of_unfrozen_towers_without_lora(tiny_models, tmp_path):
    """Full fine-tuning (no LoRA): the LLM + tokenizer go to the folder itself, SigLIP to visual_encoder/."""
    from mmengine.config import Config
    from transformers import AutoModelForCausalLM, AutoTokenizer, SiglipImageProcessor, SiglipVisionModel
    from xtuner.registry import BUILDER

    from tests.export.helpers import model_cfg_options
    from videoccam.export.xtuner_layout import save_xtuner_layout

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
