"""videoccam/gpu_check.py: how checks pass, fail and report (the dry run itself: tests/tools/test_gpu_check.py).

The training, export and bench code paths run in the dry-run test; here the decisions are checked with stand-ins
for the slow parts: a failing check does not stop the others and the tool exits 1 naming it, the environment
report says what to install, a tiny run fails when its loss does not fall, drifts from the fp32 run or its export
disagrees, and the planner comparison fails outside 0.7-1.3.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.conftest import load_tool
from videoccam import gpu_check
from videoccam.gpu_check import CheckResult, Options, Variant


def test_a_failing_check_is_reported_and_the_others_still_run(monkeypatch, tmp_path, capsys):
    def broken(options):
        raise RuntimeError("stand-in failure")

    monkeypatch.setattr(gpu_check, "check_bench_loss", broken)
    out = tmp_path / "report.json"
    code = load_tool("gpu_check").main(["--dry-run", "--only", "bench_loss", "memory_plan", "--work-dir",
                                        str(tmp_path), "--out", str(out)])  # fmt: skip
    assert code == 1
    assert "FAILED: bench_loss" in capsys.readouterr().err
    report = json.loads(out.read_text())
    assert report["failed"] == ["bench_loss"]
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["bench_loss"]["reason"] == "RuntimeError: stand-in failure"
    assert checks["memory_plan"]["status"] == "pass"


def test_without_cuda_only_the_dry_run_starts(capsys):
    if torch.cuda.is_available():
        pytest.skip("checks the refusal on a machine without CUDA")
    assert load_tool("gpu_check").main([]) == 2
    assert "--dry-run" in capsys.readouterr().err


def test_environment_says_what_to_install(monkeypatch):
    versions = {"flash-attn": None, "flash_attn": None, "bitsandbytes": "0.45.0", "deepspeed": "0.19.8"}
    real = gpu_check._version
    monkeypatch.setattr(gpu_check, "_version", lambda name: versions[name] if name in versions else real(name))
    monkeypatch.setattr(gpu_check, "_importable", lambda module: (False, "not installed"))
    monkeypatch.setattr(gpu_check, "_deepspeed_ops", lambda: {"fused_adam": False})
    result = gpu_check.check_environment(Options(dry_run=True))
    notes = "\n".join(result.notes)
    assert "pip install flash-attn --no-build-isolation" in notes
    assert "bitsandbytes 0.45.0" in notes and "'bitsandbytes>=0.45.1,<0.46'" in notes
    assert "0.19.7 and later break mmengine" in notes
    if not torch.cuda.is_available():
        on_gpu = gpu_check.check_environment(Options(dry_run=False))
        assert on_gpu.status == "fail" and "no CUDA" in on_gpu.reason


@pytest.mark.parametrize("case", ["pass", "flat", "drift", "export"])
def test_a_tiny_run_fails_when_it_should(monkeypatch, tmp_path, case):
    """Stand-ins for training, export and chat return controlled figures; the check's decision is tested."""
    losses = [6.0] * 5 + [4.0] * 5 if case != "flat" else [6.0] * 10
    trained, exported = 4.0, 4.0 if case != "export" else 4.5
    monkeypatch.setattr(gpu_check, "train_tiny", lambda data, variant, options: (object(), list(losses)))
    monkeypatch.setattr(gpu_check, "held_out_loss", lambda model, data, device, dtype: trained)
    monkeypatch.setattr(gpu_check, "export_tiny", lambda *args: tmp_path)
    monkeypatch.setattr(gpu_check, "chat_with_export", lambda *args: {"reply": "The red square.",
                                                                       "export_loss": exported})  # fmt: skip
    reference = {"loss_last": 4.0 if case != "drift" else 3.0}
    result = gpu_check._tiny_check("tiny_bf16", lambda: None, Variant("tiny_bf16"),
                                   Options(work_dir=tmp_path), reference=reference)  # fmt: skip
    if case == "pass":
        assert result.status == "pass", result.reason
        return
    assert result.status == "fail"
    assert {"flat": "did not fall", "drift": "fp32 run", "export": "export's held-out loss"}[case] in result.reason


def test_memory_plan_is_compared_with_the_measured_peak(monkeypatch):
    """Real sizes (Qwen2.5-7B stage 2, as bench_train_step --real-sizes), planned on the meta device; the
    measurement is the one the bench_train_step check leaves (here a stand-in number)."""
    options = Options(dry_run=False)
    options.measurements["bench_train_step"] = {"max_memory_gib": 1.0}
    planned = gpu_check.check_memory_plan(options).figures["planned_gib"]
    assert 30 < planned < 80  # 7.6 B bf16 weights, fp32 LoRA and AdamW states, activations of 2 x 16 frames
    options.measurements["bench_train_step"]["max_memory_gib"] = planned * 1.1
    good = gpu_check.check_memory_plan(options)
    assert good.status == "pass" and good.figures["planned_over_measured"] == pytest.approx(1 / 1.1, abs=1e-3)
    options.measurements["bench_train_step"]["max_memory_gib"] = planned / 2
    bad = gpu_check.check_memory_plan(options)
    assert bad.status == "fail" and "outside 0.7-1.3" in bad.reason
    del options.measurements["bench_train_step"]
    assert gpu_check.check_memory_plan(options).status == "fail"


def test_table_and_report_hold_every_result():
    results = [CheckResult("environment", "pass", figures={"torch": "2.x"}),
               CheckResult("tiny_qlora", "skip", reason="bitsandbytes: not installed; pip install ..."),
               CheckResult("bench_loss", "fail", reason="chunked and plain losses differ")]  # fmt: skip
    table = gpu_check.format_table(results)
    assert "torch='2.x'" in table and "pip install" in table and "differ" in table
    data = gpu_check.report(results, Options(dry_run=True), 1.0)
    assert data["failed"] == ["bench_loss"] and data["skipped"] == ["tiny_qlora"]
    assert json.loads(json.dumps(data))["checks"][1]["reason"].startswith("bitsandbytes")
    assert Path(gpu_check.ZERO2_JSON).is_file()
