"""tools/gpu_check.py --dry-run: every check's code runs on the CPU at tiny sizes, with its stand-in stated.

What it proves on a GPU cannot be shown here (no GPU is lent to the tests); what runs: the tiny stage 2 trained
in fp32, bf16 (CPU autocast), with the flash-attention code path on SDPA, through DeepSpeed ZeRO-2 with
configs/deepspeed/zero2_bf16.json on gloo, and with the QLoRA code path without quantisation, each exported,
loaded back with trust_remote_code and answering through ``model.chat``; the four bench tools at ``--smoke``
sizes through their ``main``; the planner for bench_train_step's configuration. About 65 s of CPU time.
"""

from __future__ import annotations

import importlib.util
import json

import pytest

from tests.conftest import load_tool
from videoccam.gpu_check import CHECKS

GPU_ONLY = {"tiny_flash_attention_2", "tiny_qlora", "tiny_deepspeed_zero2", "bench_train_step", "bench_projector",
            "bench_loss", "bench_long_video", "memory_plan"}  # fmt: skip


@pytest.mark.slow
def test_dry_run_runs_every_check_on_the_cpu(tmp_path, capsys):
    out = tmp_path / "report.json"
    code = load_tool("gpu_check").main(["--dry-run", "--work-dir", str(tmp_path / "work"), "--out", str(out)])
    printed = capsys.readouterr()
    report = json.loads(out.read_text())
    assert code == 0, (report["failed"], printed.err[-2000:])
    checks = {c["name"]: c for c in report["checks"]}
    assert list(checks) == list(CHECKS) and report["dry_run"] and report["failed"] == []
    # nothing skipped silently: DeepSpeed is the only package a dry run can lack, and then it says so
    expected_skips = [] if importlib.util.find_spec("deepspeed") else ["tiny_deepspeed_zero2"]
    assert report["skipped"] == expected_skips
    for name in expected_skips:
        assert "pip install" in checks[name]["reason"]
    for name in GPU_ONLY - set(expected_skips):
        assert checks[name]["status"] == "pass" and checks[name]["stand_in"], name
    for name in ("tiny_fp32", "tiny_bf16", "tiny_flash_attention_2", "tiny_qlora", *GPU_ONLY - set(expected_skips)):
        assert checks[name]["status"] == "pass", (name, checks[name]["reason"])
    for name in [n for n in checks if n.startswith("tiny_") and checks[n]["status"] == "pass"]:
        figures = checks[name]["figures"]
        assert figures["loss_last"] < figures["loss_first"] and figures["reply"], name
        assert figures["device"] == "cpu" and figures["export_relative_gap"] <= 0.05
    assert checks["tiny_bf16"]["figures"]["relative_gap_to_fp32"] <= 0.1
    assert checks["environment"]["figures"]["torch"] and checks["environment"]["figures"]["transformers"]
    # the table names every check
    assert all(name in printed.out for name in CHECKS) and "report:" in printed.out
