"""Tests of tools/eval.py and tools/make_synthetic_benchmarks.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT as REPO
from tests.conftest import load_tool, write_malicious_checkpoint
from tests.export.helpers import STAGE2, as_cli_options

eval_tool = load_tool("eval")
synth_tool = load_tool("make_synthetic_benchmarks")


@pytest.fixture(scope="module")
def bench_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Synthetic layouts of all benchmarks, written through the CLI."""
    root = tmp_path_factory.mktemp("bench")
    assert synth_tool.main(["--out", str(root)]) == 0
    return root


def _results(out: Path, bench: str) -> dict[str, dict]:
    """All results files of a benchmark, without the paths (which differ between output folders)."""
    found = {}
    for p in sorted((out / bench).glob("results_f*.json")):
        r = json.loads(p.read_text())
        r.pop("files")
        found[p.name] = r
    return found


def test_make_synthetic_benchmarks_layouts(bench_root: Path) -> None:
    assert (bench_root / "mvbench/json/episodic_reasoning.json").exists()
    assert (bench_root / "mvbench/video/tvqa/frames_fps3_hq/clip0/00001.jpg").exists()
    assert (bench_root / "videomme/videomme/test-00000-of-00001.parquet").exists()
    assert len(list((bench_root / "videomme/subtitle").glob("*.srt"))) == 3
    assert (bench_root / "mlvu/json/8_sub_scene.json").exists()
    assert (bench_root / "videovista/VideoVista.json").exists()


@pytest.mark.parametrize(
    ("bench", "files", "headline"),
    [
        ("mvbench", ["results_f2.json", "results_f4.json"], {"Avg"}),
        ("videomme", ["results_f2_w_sub.json", "results_f2_wo_sub.json", "results_f4_w_sub.json",
                      "results_f4_wo_sub.json"], {"overall", "short", "medium", "long"}),
        ("mlvu", ["results_f2.json", "results_f4.json"], {"M-Avg", "micro"}),
        ("videovista", ["results_f2.json", "results_f4.json"], {"understanding", "reasoning", "overall"}),
    ],
)
def test_main_runs_each_benchmark(bench: str, files: list[str], headline: set[str], bench_root: Path,
                                  tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv = [bench, "--scripted-backend", "hash", "--data", str(bench_root / bench), "--out", str(tmp_path),
            "--num-frames", "2,4", "--batch-size", "2", "--limit", "3", "--no-progress"]
    assert eval_tool.main(argv) == 0
    results = _results(tmp_path, bench)
    assert sorted(results) == files
    for r in results.values():
        assert set(r["headline"]) == headline and r["limit"] == 3 and r["benchmark"] == bench
    assert f"== {bench} ==" in capsys.readouterr().out
    summary = json.loads((tmp_path / bench / "summary.json").read_text())
    assert set(summary) == {"2", "4"}


def test_subtitles_option(bench_root: Path, tmp_path: Path) -> None:
    argv = ["videomme", "--scripted-backend", "const:A", "--data", str(bench_root / "videomme"), "--out",
            str(tmp_path), "--subtitles", "yes", "--no-progress"]
    assert eval_tool.main(argv) == 0
    assert sorted(_results(tmp_path, "videomme")) == ["results_f16_w_sub.json"]


def test_argument_errors(bench_root: Path, tmp_path: Path) -> None:
    base = ["mvbench", "--data", str(bench_root / "mvbench"), "--out", str(tmp_path)]
    for extra in ([], ["--model", "m", "--config", "c", "--checkpoint", "k"], ["--config", "c"],
                  ["--scripted-backend", "hash", "--model", "m"], ["--model", "m", "--fail-after", "3"],
                  ["--scripted-backend", "hash", "--num-frames", "16,x"]):
        with pytest.raises(SystemExit) as e:
            eval_tool.main(base + extra)
        assert e.value.code == 2
    assert eval_tool.parse_frame_counts("16, 32,16") == [16, 32]


def _run_cli(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, str(REPO / "tools" / "eval.py"), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def test_killed_run_resumes_to_identical_results(bench_root: Path, tmp_path: Path) -> None:
    """Kill the process (os._exit, no clean-up) after K answers, twice; the resumed run equals a clean run."""
    common = ["videomme", "--scripted-backend", "hash", "--data", str(bench_root / "videomme"),
              "--num-frames", "2,4", "--batch-size", "1", "--no-progress"]
    clean = _run_cli(common + ["--out", str(tmp_path / "clean")])
    assert clean.returncode == 0, clean.stderr

    out = tmp_path / "resumed"
    first = _run_cli(common + ["--out", str(out), "--fail-after", "5"])
    assert first.returncode == 17, first.stderr
    assert len((out / "videomme/predictions_f2.jsonl").read_text().splitlines()) == 5
    assert not list((out / "videomme").glob("results_*.json"))
    second = _run_cli(common + ["--out", str(out), "--fail-after", "25"])  # 19 more for f2, then 6 of f4
    assert second.returncode == 17, second.stderr
    assert len((out / "videomme/predictions_f2.jsonl").read_text().splitlines()) == 24
    assert len((out / "videomme/predictions_f4.jsonl").read_text().splitlines()) == 6
    last = _run_cli(common + ["--out", str(out)])
    assert last.returncode == 0, last.stderr
    assert len((out / "videomme/predictions_f4.jsonl").read_text().splitlines()) == 24
    assert _results(out, "videomme") == _results(tmp_path / "clean", "videomme")
    assert last.stdout.split("== videomme ==")[1] == clean.stdout.split("== videomme ==")[1]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("bench", "extra"),
    [
        ("mvbench", ["--tasks", "Action Sequence,Action Antonym,Episodic Reasoning"]),  # bounds + frame folder
        ("videomme", []),
        ("mlvu", []),
        ("videovista", []),
    ],
)
def test_end_to_end_tiny_real_model(bench: str, extra: list[str], tiny_hf_videoccam: Path, bench_root: Path,
                                    tmp_path: Path) -> None:
    """tools/eval.py with the real (tiny, random) model on each synthetic layout: runs, resumes, right keys."""
    argv = [bench, "--model", str(tiny_hf_videoccam), "--data", str(bench_root / bench), "--out", str(tmp_path),
            "--num-frames", "2,4", "--batch-size", "2", "--limit", "2", "--device", "cpu", "--no-progress",
            "--max-new-tokens", "4", "--gen-max-new-tokens", "4", *extra]
    assert eval_tool.main(argv) == 0
    first = _results(tmp_path, bench)
    assert first and all(r["metrics"]["overall"]["total"] > 0 for r in first.values())
    records = (tmp_path / bench / "predictions_f4.jsonl").read_text().splitlines()
    assert records and all(isinstance(json.loads(x)["reply"], str) for x in records)
    assert eval_tool.main(argv) == 0  # resumes: nothing left to answer, same results
    assert _results(tmp_path, bench) == first


def test_checkpoint_that_would_run_code_is_refused(tiny_trained, bench_root: Path, tmp_path: Path, capsys) -> None:
    marker = tmp_path / "payload_ran"
    evil = write_malicious_checkpoint(tmp_path / "iter_2.pth", marker,
                                      {"state_dict": tiny_trained.model.state_dict()})  # fmt: skip
    argv = ["mvbench", "--config", str(STAGE2), "--checkpoint", str(evil), "--cfg-options",
            *as_cli_options(tiny_trained.options), "--data", str(bench_root / "mvbench"), "--out", str(tmp_path / "o"),
            "--num-frames", "2", "--limit", "1", "--device", "cpu", "--no-progress"]
    assert eval_tool.main(argv) == 2
    err = capsys.readouterr().err
    assert f"error: refusing to load checkpoint '{evil}': it needs the global posix.system" in err, err
    assert not marker.exists() and not (tmp_path / "o" / "mvbench").exists()
