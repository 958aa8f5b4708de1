"""videoccam/memory_plan.py (mostly through tools/plan_memory.py): architectures without weights, the estimate's
structure, and a check against measurement."""

from __future__ import annotations

import json

import pytest

from tests.configs.test_configs import QLORA, RECIPES, _rel
from tests.conftest import ROOT, load_tool
from videoccam.config import load_config
from videoccam.memory_plan import BUILTIN_ARCHITECTURES, _architecture_and_skeleton

# Parameter counts of the released checkpoints (model cards / safetensors index), to check the built-in table.
RELEASED_PARAMS = {
    "microsoft/Phi-3-mini-4k-instruct": 3_821_079_552,
    "microsoft/Phi-3.5-mini-instruct": 3_821_079_552,
    "Qwen/Qwen2.5-7B-Instruct": 7_615_616_512,
    "01-ai/Yi-1.5-9B-Chat": 8_829_407_232,
    "microsoft/Phi-3-medium-4k-instruct": 13_960_238_080,
    "google/siglip-so400m-patch14-384": 428_225_600,  # the vision tower only
}
H100_GIB = 79.0  # usable memory of an 80 GB GPU


def run_json(capsys, *argv: str) -> dict:
    assert load_tool("plan_memory").main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("name", list(BUILTIN_ARCHITECTURES))
def test_builtin_table_rebuilds_the_released_architectures(name):
    kind = "vision" if "siglip" in name else "llm"
    _, source, skeleton = _architecture_and_skeleton(name, "table", kind)
    assert "built-in table" in source
    assert all(p.device.type == "meta" for p in skeleton.parameters())
    assert sum(p.numel() for p in skeleton.parameters()) == RELEASED_PARAMS[name]


@pytest.mark.parametrize("path", RECIPES, ids=_rel)
def test_plan_of_every_recipe(capsys, path):
    qlora = path == QLORA
    gpus, zeros = (1, (0,)) if qlora else (8, (2, 3))
    plans = {z: run_json(capsys, str(path), "--gpus", str(gpus), "--zero", str(z)) for z in zeros}
    cfg = load_config(str(path))
    for zero, plan in plans.items():
        facts = plan["facts"]
        assert facts["visual_tokens_per_sample"] == 1024
        assert facts["tokens_per_sample"] == cfg.max_length  # worst case: the whole text budget
        assert facts["tokens_per_micro_batch"] == cfg.batch_size * cfg.max_length
        assert facts["tokens_per_step"] == cfg.max_length * cfg.global_batch_size
        assert facts["global_batch"] == cfg.global_batch_size
        assert facts["frames_per_micro_batch"] == cfg.batch_size * 16
        assert plan["total_bytes"] == sum(row["bytes"] for row in plan["rows"])
        trainable = {part: p["trainable"] for part, p in plan["params"].items()}
        if cfg.model.get("llm_lora") is None:  # stage 1: only the projector
            assert trainable["llm"] == trainable["visual_encoder"] == 0 and trainable["projector"] > 0
        else:
            assert all(trainable.values())
        # the per-device batches of the recipes are chosen to fit the GPUs they assume
        assert plan["total_gib"] < (22.0 if qlora else H100_GIB), (zero, plan["total_gib"])
    if not qlora:
        assert plans[3]["total_bytes"] < plans[2]["total_bytes"]


def test_checkpointing_offload_and_options_move_the_estimate_the_right_way(capsys):
    path = str(ROOT / "configs/qwen2_5_7b/videoccam_qwen2_5_7b_stage2.py")
    base = run_json(capsys, path, "--gpus", "8", "--zero", "2")
    rows = {r["item"]: r["bytes"] for r in base["rows"]}
    no_ckpt = run_json(capsys, path, "--gpus", "8", "--zero", "2", "--no-checkpointing")
    no_ckpt_rows = {r["item"]: r["bytes"] for r in no_ckpt["rows"]}
    assert no_ckpt_rows["LLM: all layers"] > 5 * rows["LLM: checkpointed layer inputs"]
    offload = run_json(capsys, path, "--gpus", "8", "--zero", "2", "--offload")
    assert offload["total_bytes"] < base["total_bytes"] and offload["host_offload_bytes_per_gpu"] > 0
    more_gpus = run_json(capsys, path, "--gpus", "16", "--zero", "2")
    assert more_gpus["total_bytes"] < base["total_bytes"]
    longer = run_json(capsys, path, "--gpus", "8", "--zero", "2", "--frames", "32",
                      "--cfg-options", "train_dataloader.batch_size=1")
    assert longer["facts"]["frames_per_micro_batch"] == 32 and longer["facts"]["tokens_per_micro_batch"] == 8192
    # the LLM's view of a video does not depend on its length
    assert longer["facts"]["visual_tokens_per_sample"] == 1024


def test_several_media_per_sample_count_every_item(capsys):
    path = str(ROOT / "configs/qwen2_5_7b/videoccam_qwen2_5_7b_stage2.py")
    cfg = load_config(path)
    one = run_json(capsys, path, "--gpus", "8", "--zero", "2")
    three = run_json(capsys, path, "--gpus", "8", "--zero", "2", "--media-per-sample", "3")
    facts = three["facts"]
    assert facts["visual_tokens_per_sample"] == 3 * 1024 and facts["tokens_per_sample"] == cfg.max_length
    assert facts["frames_per_micro_batch"] == 3 * one["facts"]["frames_per_micro_batch"]
    assert three["total_bytes"] > one["total_bytes"]  # three vision and projector passes per sample
    assert load_tool("plan_memory").main([path, "--media-per-sample", "9"]) == 2  # 9 x 1024 > max_length 8192
    assert "leave no room for text within max_length=8192" in capsys.readouterr().err


def test_local_config_json_is_used_and_table_output_prints(capsys, tiny_models):
    path = str(ROOT / "configs/qwen2_5_7b/videoccam_qwen2_5_7b_stage1.py")
    options = [f"model.llm.pretrained_model_name_or_path={tiny_models / 'qwen2'}",
               f"model.visual_encoder.pretrained_model_name_or_path={tiny_models / 'siglip'}"]
    plan = run_json(capsys, path, "--gpus", "1", "--zero", "0", "--cfg-options", *options)
    assert plan["facts"]["llm_source"].startswith("config.json of")
    assert plan["facts"]["patches_per_frame"] == 16  # the tiny SigLIP: 64 / 16 = 4 x 4
    assert load_tool("plan_memory").main([path, "--gpus", "8", "--zero", "3"]) == 0
    table = capsys.readouterr().out
    assert "TOTAL (peak estimate)" in table and "built-in table" in table


def test_unusable_settings_are_clear_errors(capsys):
    tool = load_tool("plan_memory")
    assert tool.main([str(QLORA), "--gpus", "8", "--zero", "3"]) == 2
    assert "ZeRO-3" in capsys.readouterr().err
    assert tool.main([str(RECIPES[0]), "--zero", "0", "--offload"]) == 2
    assert "--offload needs DeepSpeed" in capsys.readouterr().err
    assert tool.main([str(RECIPES[0]), "--cfg-options", "model.llm.pretrained_model_name_or_path=no/such-model"]) == 2
    assert "built-in released architectures" in capsys.readouterr().err


@pytest.mark.slow
def test_estimate_is_within_30_percent_of_measured_peak_memory(capsys, tmp_path):
    """A scaled-down stage-2 recipe (random Qwen2 + SigLIP written from configs, 16 frames x 2 videos) trains
    on CPU; the peak resident memory of a training step is compared with the planner (tools/bench_plan_memory.py)."""
    bench = load_tool("bench_plan_memory")
    assert bench.main(["--json", "--out", str(tmp_path / "models")]) == 0
    results = json.loads(capsys.readouterr().out)
    assert {r["checkpointing"] for r in results} == {True, False}
    for r in results:
        assert r["trainable_params_planned"] == r["trainable_params_measured"]
        assert 0.7 <= r["ratio"] <= 1.3, r
        assert all(loss == loss for loss in r["losses"])  # finite losses: the step really ran
    on, off = sorted(results, key=lambda r: r["checkpointing"], reverse=True)
    assert off["measured_bytes"] > on["measured_bytes"]
