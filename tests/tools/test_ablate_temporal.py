"""tools/ablate_temporal.py, smoke version: generated temporal data, both variants trained a few iterations through
tools/train.py, evaluated at two frame counts; results.json, the table and the plot. (The full run, with the
figures the README quotes, is the tool's default: see README "What the causal mask buys".)"""

from __future__ import annotations

import json

import torch
from PIL import Image

from tests.conftest import load_tool


def test_ablation_smoke(tiny_models, tmp_path, capsys):
    llm, vision = tiny_models / "qwen2", tiny_models / "siglip"
    options = [
        f"model.llm.pretrained_model_name_or_path={llm}", f"model.visual_encoder.pretrained_model_name_or_path={vision}",
        f"tokenizer.pretrained_model_name_or_path={llm}", f"image_processor.pretrained_model_name_or_path={vision}",
        f"train_dataloader.dataset.tokenizer.pretrained_model_name_or_path={llm}",
        f"train_dataloader.dataset.image_processor.pretrained_model_name_or_path={vision}",
        "train_cfg.max_epochs=1", "train_dataloader.batch_size=4", "param_scheduler.0.end=1",
        "param_scheduler.1.end=1",
    ]  # fmt: skip
    out = tmp_path / "ablation"
    status = load_tool("ablate_temporal").main([
        "--out", str(out), "--num-train", "8", "--num-test", "4", "--train-frames", "4", "--eval-frames", "4,8",
        "--cfg-options", *options])  # fmt: skip
    assert status == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"ccam", "no_mask", "per_task", "rules"}
    # the generated questions are scored by their content words (colour, direction), and the table says so
    assert results["rules"] == {"order": "content words (color)", "direction": "content words (direction)"}
    for variant in ("ccam", "no_mask"):
        assert set(results[variant]) == {"4", "8"} and all(0.0 <= v <= 1.0 for v in results[variant].values())
        assert set(results["per_task"][variant]["8"]) == {"order", "direction"}
        assert (out / variant / "last_checkpoint").is_file()
    # the variants really differ in the saved projector config (and nothing else was trained differently)
    ckpts = {v: torch.load((out / v / "last_checkpoint").read_text().strip(), map_location="cpu", weights_only=False)
             for v in ("ccam", "no_mask")}  # fmt: skip
    assert ckpts["ccam"]["meta"]["cfg"] != ckpts["no_mask"]["meta"]["cfg"]
    assert "causal_mask=False" in ckpts["no_mask"]["meta"]["cfg"].replace(" ", "")
    assert "causal_mask=True" in ckpts["ccam"]["meta"]["cfg"].replace(" ", "")
    # the frozen SigLIP's features were cached once for both variants (8 training videos)
    assert len(list((out / "feature_cache").rglob("*.safetensors"))) >= 8
    printed = capsys.readouterr().out
    assert "variant" in printed and "no_mask" in printed and "direction" in printed
    assert "scored by: order: content words (color); direction: content words (direction)" in printed
    with Image.open(out / "results.png") as image:
        assert image.size[0] > 400 and image.size[1] > 300


def test_ablation_arguments(tmp_path, capsys):
    tool = load_tool("ablate_temporal")
    try:
        tool.main(["--train", "x.json", "--out", str(tmp_path)])
    except SystemExit as exit_:
        assert exit_.code == 2
    assert "give --train, --test and --root together" in capsys.readouterr().err
    status = tool.main(["--train", str(tmp_path / "missing.json"), "--test", str(tmp_path / "t.json"), "--root",
                        str(tmp_path), "--out", str(tmp_path / "o")])  # fmt: skip
    assert status == 1
    assert "missing.json does not exist" in capsys.readouterr().err


def test_users_records_are_scored_by_exact_match(tmp_path, monkeypatch, capsys):
    """Own --train/--test/--root: the general rule (normalised exact match), named in the output."""
    from videoccam.evaluation.grounding import AccuracyReport, ExactMatch
    from videoccam.evaluation.metrics import Tally
    from videoccam.evaluation.temporal_ablation import AblationResult

    tool = load_tool("ablate_temporal")
    seen = {}

    def fake_run_ablation(train, test, root, out, **kwargs):
        seen.update(kwargs)
        report = AccuracyReport({"all": Tally(1, 2)}, rules={"all": kwargs["rule"].label("The man opens a door.")})
        result = AblationResult({"ccam": {16: report}, "no_mask": {16: report}})
        (out / "results.json").write_text(json.dumps(result.to_dict()))
        return result

    monkeypatch.setattr(tool, "run_ablation", fake_run_ablation)
    for name in ("t.json", "v.json"):
        (tmp_path / name).write_text("[]")
    (tmp_path / "o").mkdir()
    assert tool.main(["--train", str(tmp_path / "t.json"), "--test", str(tmp_path / "v.json"), "--root",
                      str(tmp_path), "--out", str(tmp_path / "o")]) == 0  # fmt: skip
    assert isinstance(seen["rule"], ExactMatch)
    assert "scored by: all: exact match" in capsys.readouterr().out
