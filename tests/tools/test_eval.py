"""Tests of tools/eval.py and tools/make_synthetic_benchmarks.py."""

from __future__ import annotations

import json
import os
import re
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


DIST_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "ROLE_RANK", "MASTER_ADDR",
             "MASTER_PORT")  # fmt: skip


def _cli_env() -> dict[str, str]:
    """The environment of a child run: offline, this checkout, one thread per process, and none of the
    torch.distributed variables that in-process trainings of this test session may have left behind."""
    env = {k: v for k, v in os.environ.items() if k not in DIST_VARS and not k.startswith("TORCHELASTIC_")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    return env


def _run_cli(args: list[str], nproc: int = 0, timeout: int = 120) -> subprocess.CompletedProcess:
    """tools/eval.py in a child process; with ``nproc`` >= 1 under ``torchrun --nproc_per_node=nproc``."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] if nproc \
        else [sys.executable]  # fmt: skip
    return subprocess.run([*launcher, str(REPO / "tools" / "eval.py"), *args], cwd=REPO, env=_cli_env(),
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def _outputs(out: Path, bench: str) -> dict[str, object]:
    """What a run leaves behind, comparable across output folders: results (without paths), summary, the text of
    every prediction file (shards included)."""
    files = {p.name: p.read_text() for p in sorted((out / bench).glob("predictions_f*.jsonl"))}
    return {"results": _results(out, bench), "summary": json.loads((out / bench / "summary.json").read_text()),
            "predictions": files}  # fmt: skip


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
        ("videomme", ["--limit", "4"]),  # limits with videos for 2 ranks
        ("mlvu", []),
        ("videovista", ["--limit", "7"]),
    ],
)
def test_end_to_end_tiny_real_model(bench: str, extra: list[str], tiny_hf_videoccam: Path, bench_root: Path,
                                    tmp_path: Path) -> None:
    """tools/eval.py with the real (tiny, random) model on each synthetic layout: runs, resumes, right keys; under
    torchrun with 2 processes, the same replies, verdicts and metrics."""
    common = [bench, "--model", str(tiny_hf_videoccam), "--data", str(bench_root / bench), "--num-frames", "2,4",
              "--batch-size", "2", "--limit", "2", "--device", "cpu", "--no-progress", "--max-new-tokens", "4",
              "--gen-max-new-tokens", "4", *extra]  # fmt: skip
    argv = common + ["--out", str(tmp_path / "one")]
    assert eval_tool.main(argv) == 0
    first = _results(tmp_path / "one", bench)
    assert first and all(r["metrics"]["overall"]["total"] > 0 for r in first.values())
    records = (tmp_path / "one" / bench / "predictions_f4.jsonl").read_text().splitlines()
    assert records and all(isinstance(json.loads(x)["reply"], str) for x in records)
    assert eval_tool.main(argv) == 0  # resumes: nothing left to answer, same results
    assert _results(tmp_path / "one", bench) == first
    two = _run_cli(common + ["--out", str(tmp_path / "two")], nproc=2, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    assert len(re.findall(r"4 frames: rank \d of 2 answers [1-9]", two.stderr)) == 2  # both ranks answered
    assert _outputs(tmp_path / "two", bench) == _outputs(tmp_path / "one", bench)


# ----------------------------------------------------------------------------------------------------------------
# Several processes (torchrun on CPU, gloo)
# ----------------------------------------------------------------------------------------------------------------
def test_more_processes_than_gpus_is_refused(bench_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture) -> None:  # fmt: skip
    """A GPU machine (simulated: 4 GPUs) and torchrun with 8 processes on the node: stops before loading."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    for k, v in {"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "3", "LOCAL_WORLD_SIZE": "8"}.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(SystemExit) as e:
        eval_tool.main(["mvbench", "--model", str(tmp_path), "--data", str(bench_root / "mvbench"), "--out",
                        str(tmp_path / "o")])  # fmt: skip
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "8 processes on this node but 4 GPU(s) visible: start one process per GPU (torchrun --nproc_per_node=4)" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
@pytest.mark.parametrize(("bench", "batch_size"), [("mvbench", 3), ("videomme", 1), ("mlvu", 2), ("videovista", 2)])
def test_two_processes_equal_one_process(bench: str, batch_size: int, bench_root: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture) -> None:  # fmt: skip
    """torchrun with 2 processes: every prediction (same file, same order), result and summary of a one-process
    run, with replies that depend on the whole batch (so the batches are the same too)."""
    common = [bench, "--scripted-backend", "batch-hash", "--data", str(bench_root / bench), "--num-frames", "2,4",
              "--batch-size", str(batch_size), "--no-progress"]  # fmt: skip
    assert eval_tool.main(common + ["--out", str(tmp_path / "one")]) == 0
    table = capsys.readouterr().out.split(f"== {bench} ==")[1]
    two = _run_cli(common + ["--out", str(tmp_path / "two")], nproc=2)
    assert two.returncode == 0, two.stderr[-3000:]
    shares = [int(n) for n in re.findall(r"2 frames: rank \d of 2 answers (\d+) of the", two.stderr)]
    assert len(shares) == 2 and min(shares) > 0  # both ranks answered a share
    assert _outputs(tmp_path / "two", bench) == _outputs(tmp_path / "one", bench)
    assert two.stdout.split(f"== {bench} ==")[1] == table


@pytest.mark.slow
def test_killed_rank_resumes_on_another_process_count(bench_root: Path, tmp_path: Path) -> None:
    """A rank dies (os._exit) mid-way in a 2-process run: one process finishes it, answering only what is
    missing; and the reverse (a one-process run dies, two processes finish). Results equal a clean run."""
    common = ["videomme", "--scripted-backend", "batch-hash", "--data", str(bench_root / "videomme"),
              "--num-frames", "2,4", "--batch-size", "2", "--no-progress"]  # fmt: skip
    assert eval_tool.main(common + ["--out", str(tmp_path / "clean")]) == 0
    total = 2 * 24  # 12 questions x 2 subtitle settings x 2 frame counts

    def saved(out: Path) -> int:
        return sum(len(p.read_text().splitlines()) for p in (out / "videomme").glob("predictions_f*.jsonl"))

    # 2 processes, rank 1 dies after 2 answers (torchrun then stops rank 0); 1 process finishes
    out = tmp_path / "two_then_one"
    first = _run_cli(common + ["--out", str(out), "--fail-after", "2", "--fail-rank", "1"], nproc=2)
    assert first.returncode != 0
    assert not list((out / "videomme").glob("results_*.json"))
    assert list((out / "videomme").glob("predictions_f2.rank*.jsonl"))
    before = saved(out)
    assert 2 <= before < total
    last = _run_cli(common + ["--out", str(out)])
    assert last.returncode == 0, last.stderr[-3000:]
    found = sum(int(n) for n in re.findall(r"resuming, (\d+) of 24 answers found", last.stderr))
    made = sum(int(n) for n in re.findall(r"frames: all (\d+) answers found", last.stderr))
    assert found + made == before  # what was saved was not asked again
    assert _outputs(out, "videomme") == _outputs(tmp_path / "clean", "videomme")

    # 1 process dies after 10 answers; 2 processes finish
    out = tmp_path / "one_then_two"
    first = _run_cli(common + ["--out", str(out), "--fail-after", "10"])
    assert first.returncode == 17
    assert saved(out) == 10
    last = _run_cli(common + ["--out", str(out)], nproc=2)
    assert last.returncode == 0, last.stderr[-3000:]
    shares = re.findall(r"(\d) frames: rank \d of 2 answers (\d+) of the (\d+) questions left", last.stderr)
    assert sum(int(n) for f, n, _ in shares if f == "2") == 24 - 10 and sum(int(n) for f, n, _ in shares) == total - 10
    assert _outputs(out, "videomme") == _outputs(tmp_path / "clean", "videomme")


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
