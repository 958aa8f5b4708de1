"""The embedded default's configs train through the real config path (tools/train.py and the xtuner CLI)."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT, load_tool, tiny_cfg_options, write_malicious_checkpoint

STAGE1 = str(ROOT / "configs/tiny/videoccam_tiny_qwen2_stage1.py")
STAGE2 = str(ROOT / "configs/tiny/videoccam_tiny_qwen2_stage2.py")


def _short(n: int) -> list[str]:
    return [f"train_dataloader.dataset.max_dataset_length={2 * n}", "train_dataloader.batch_size=2",
            "train_cfg.max_epochs=1", "default_hooks.logger.interval=1"]


def _checkpoint(work_dir: Path) -> Path:
    marker = work_dir / "last_checkpoint"
    assert marker.is_file(), f"no checkpoint written in {work_dir}"
    return Path(marker.read_text().strip())


def test_stage1_then_stage2_two_iterations_each(tiny_models, synthetic_data, tmp_path):
    train = load_tool("train")
    opts = tiny_cfg_options(tiny_models, synthetic_data, "captions.json") + _short(2)
    assert train.main([STAGE1, "--work-dir", str(tmp_path / "s1"), "--cfg-options", *opts]) == 0
    ckpt1 = _checkpoint(tmp_path / "s1")
    state1 = torch.load(ckpt1, map_location="cpu", weights_only=False)["state_dict"]
    assert state1 and all(k.startswith("projector.") for k in state1)

    opts = tiny_cfg_options(tiny_models, synthetic_data, "train.json") + _short(2)
    opts.append(f"model.pretrained_pth={tmp_path / 's1'}")
    assert train.main([STAGE2, "--work-dir", str(tmp_path / "s2"), "--cfg-options", *opts]) == 0
    state2 = torch.load(_checkpoint(tmp_path / "s2"), map_location="cpu", weights_only=False)["state_dict"]
    assert set(state1) < set(state2)
    assert all(k.startswith("projector.") or "lora_" in k for k in state2)
    # stage 2 started from stage 1's projector, then trained it further
    name = next(iter(state1))
    assert not torch.equal(state1[name], state2[name])
    _check_watching(tmp_path / "s1", tmp_path / "s2")


def _check_watching(stage1: Path, stage2: Path) -> None:
    """What the recipes log to watch a run: curves (json, TensorBoard), throughput, sample answers (stage 2)."""
    scalars = [json.loads(line) for line in next(stage1.glob("*/vis_data/scalars.json")).read_text().splitlines()]
    assert [r["step"] for r in scalars] == [1, 2]
    assert all(r["tflops_per_device"] > 0 and r["samples_per_s"] > 0 and 0 <= r["data_wait"] < 1 for r in scalars)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # the default install's

    events = EventAccumulator(str(next(stage1.glob("*/vis_data"))), size_guidance={"scalars": 0})
    events.Reload()
    assert [(e.step, round(e.value, 5)) for e in events.Scalars("loss")] == [
        (r["step"], round(r["loss"], 5)) for r in scalars]
    # stage 2 (configs/tiny: SampleAnswersHook on) answered the first video / image of its 4 records at the end
    texts = [json.loads(line) for line in next(stage2.glob("*/vis_data/texts.jsonl")).read_text().splitlines()]
    assert texts and [(t["tag"], t["step"]) for t in texts] == [(f"sample_answers/{i}", 2) for i in range(len(texts))]
    out = stage1.parent / "curves.png"
    assert load_tool("plot_logs").main([str(stage1), str(stage2), "--sequential", "--out", str(out)]) == 0
    assert out.stat().st_size > 10_000


def test_stock_xtuner_cli_trains_and_failure_is_visible_only_in_artefacts(tiny_models, synthetic_data, tmp_path,
                                                                          capsys):
    """`xtuner train` works through the .pth hook, without the known notices; a broken run still exits 0, so
    callers check artefacts."""
    env = dict(os.environ, PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])
    xtuner = str(Path(sys.executable).parent / "xtuner")
    opts = tiny_cfg_options(tiny_models, synthetic_data, "captions.json") + _short(1)
    run = subprocess.run([xtuner, "train", STAGE1, "--work-dir", str(tmp_path / "ok"), "--cfg-options", *opts],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0
    assert _checkpoint(tmp_path / "ok").exists(), run.stdout[-2000:] + run.stderr[-2000:]
    assert not [notice for notice in KNOWN_NOTICES if notice in run.stdout + run.stderr], run.stdout[-5000:]

    bad = opts + ["train_dataloader.dataset.data_path=/nonexistent/data.json"]
    run = subprocess.run([xtuner, "train", STAGE1, "--work-dir", str(tmp_path / "bad"), "--cfg-options", *bad],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0  # the CLI hides the failure ...
    assert not (tmp_path / "bad" / "last_checkpoint").exists()  # ... the artefacts do not
    # ... and a converter pointed at its work dir says so (tools/train.py's runs also record why: below)
    assert load_tool("convert_to_hf").main([STAGE1, str(tmp_path / "bad"), str(tmp_path / "hf"), "--cfg-options",
                                            *opts]) == 1  # fmt: skip
    assert f"{tmp_path / 'bad'} holds no checkpoint" in capsys.readouterr().err


def test_a_failed_run_ends_with_its_error_and_log_and_its_work_dir_says_so(tiny_models, synthetic_data, tmp_path,
                                                                          capsys):
    """tools/train.py on a config that fails at build: exit 1, the error and the log as the last lines, the error
    in the log; chat and convert on its work dir then say there is no checkpoint and point to that log."""
    env = dict(os.environ, PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])
    opts = tiny_cfg_options(tiny_models, synthetic_data, "captions.json") + _short(1)
    bad, work = opts + ["train_dataloader.dataset.data_path=/nonexistent/data.json"], tmp_path / "bad"
    run = subprocess.run([sys.executable, str(ROOT / "tools/train.py"), STAGE1, "--work-dir", str(work),
                          "--cfg-options", *bad], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 1
    log = next(work.glob("*/*.log"))
    assert run.stderr.strip().splitlines()[-2:] == [
        "train: error: FileNotFoundError: data file not found: /nonexistent/data.json",
        f"train: training failed; full log: {log} (work dir {work})"], run.stderr[-3000:]
    assert "training failed:" in log.read_text() and log.read_text().rstrip().endswith(
        "FileNotFoundError: data file not found: /nonexistent/data.json")

    expected = (f"error: {work} holds no checkpoint: the training run in this work dir saved none (it failed, or has "
                f"not reached its first save). Its log is {log}; its last error: FileNotFoundError: data file not "
                "found: /nonexistent/data.json")  # fmt: skip
    assert load_tool("convert_to_hf").main([STAGE1, str(work), str(tmp_path / "hf"), "--cfg-options", *opts]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == expected
    assert not (tmp_path / "hf").exists()
    err = io.StringIO()
    video = next((synthetic_data / "videos").glob("*.mp4"))
    assert load_tool("chat").main(["--config", STAGE1, "--checkpoint", str(work), "--video", str(video), "--prompt",
                                   "What happens?"], stderr=err) == 2  # fmt: skip
    assert err.getvalue().strip() == expected


def test_a_bad_record_stops_the_run_with_its_line_its_fix_and_where_to_look_next(tiny_models, synthetic_data,
                                                                                  tmp_path, capsys):
    """A typo in a video path (after a blank line): exit 1; the last lines name the line, the nearest file and
    the fix, then how to list every bad record and how to skip them; the option they name does skip it."""
    train = load_tool("train")
    records = json.loads((synthetic_data / "captions.json").read_text())[:2]
    typo = dict(records[1], id="typo", video=records[1]["video"].replace("train_", "trian_"))
    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps(records[0]) + "\n\n" + json.dumps(typo) + "\n")
    opts = tiny_cfg_options(tiny_models, synthetic_data, "captions.json") + _short(1) + [
        f"train_dataloader.dataset.data_path={data}"]  # media root: synthetic_data
    assert train.main([STAGE1, "--work-dir", str(tmp_path / "w"), "--cfg-options", *opts]) == 1
    last = capsys.readouterr().err.strip().splitlines()[-3:]
    name = Path(records[1]["video"]).name
    assert last[0] == (f"train: error: {data} line 3 (record 1, 0-based; id='typo'): video not found: {synthetic_data}/"
                       f"{typo['video']} (did you mean {name}?); fix: correct the path in the record, or put the file "
                       "there")  # fmt: skip
    assert last[1] == (f"train: on_error='raise' stops at the first bad record. List them all: python "
                       f"tools/validate_data.py {data} --root {synthetic_data} (add --config CONFIG to check lengths "
                       "too); or skip bad records: --cfg-options train_dataloader.dataset.on_error=skip")  # fmt: skip
    assert last[2].startswith("train: training failed; full log: ")
    skip = last[1].rsplit("--cfg-options ", 1)[1]
    assert train.main([STAGE1, "--work-dir", str(tmp_path / "s"), "--cfg-options", *opts, skip]) == 0
    assert json.loads((tmp_path / "s/skipped_samples.json").read_text())["skipped"][0]["line"] == 3


# what a run printed before videoccam/quiet.py, in every run (the DeepSpeed line on a CPU-only torch)
KNOWN_NOTICES = ["Support for Transformers < 5.6 is deprecated in PEFT", '"FileClient" will be deprecated',
                 '"HardDiskBackend" is the alias', "registry tree. As a workaround", "Reach the end of the dataloader",
                 "has no metainfo", "Setting accelerator to CPU"]  # fmt: skip


def test_a_run_prints_no_known_notice_keeps_real_warnings_and_ends_with_its_losses(tiny_models, synthetic_data,
                                                                                 tmp_path):
    """Two epochs (the dataloader restarts) on data with a record whose video is missing, skipped: the library
    notices are gone, the skipped record's warning shows, the last lines are the losses and the checkpoint."""
    records = json.loads((synthetic_data / "captions.json").read_text())[:4]
    missing = dict(records[0], id="missing_video", video="videos/does_not_exist.mp4")
    data = tmp_path / "data.json"
    data.write_text(json.dumps([missing, *records]))  # first: max_dataset_length keeps the first 4
    opts = tiny_cfg_options(tiny_models, synthetic_data, "captions.json") + _short(2) + [
        f"train_dataloader.dataset.data_path={data}", "train_dataloader.dataset.on_error=skip",
        "train_cfg.max_epochs=2"]  # fmt: skip
    env = dict(os.environ, PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])
    run = subprocess.run([sys.executable, str(ROOT / "tools/train.py"), STAGE1, "--work-dir", str(tmp_path / "w"),
                          "--cfg-options", *opts], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-3000:]
    assert not [notice for notice in KNOWN_NOTICES if notice in output], output[-5000:]
    assert re.search(r"WARNING - skipping \S*data.json record 0 \(0-based; starts on line 1; id='missing_video'\): "
                     r"video not found", output), \
        output[-5000:]  # fmt: skip
    scalars = [json.loads(line) for line in next((tmp_path / "w").glob("*/vis_data/scalars.json")).read_text()
               .splitlines()]  # fmt: skip
    assert [r["step"] for r in scalars] == [1, 2, 3, 4]
    log = next((tmp_path / "w").glob("*/*.log"))
    # the first iteration's logged loss is its own; the last line gives the last iteration's own loss
    first, = re.findall(r"finished 4 iterations, loss ([0-9.]+) \(iteration 1\) -> [0-9.]+ \(iteration 4\)$",
                        run.stdout.strip().splitlines()[-2])  # fmt: skip
    assert float(first) == pytest.approx(scalars[0]["loss"], abs=1e-4)
    assert run.stdout.strip().splitlines()[-1] == f"train: checkpoint {tmp_path / 'w' / 'iter_4.pth'}; log {log}"


def test_a_checkpoint_that_would_run_code_is_refused_by_resume_and_load_from(tiny_models, synthetic_data, tmp_path,
                                                                             capsys):
    """--resume (xtuner's seed read, then mmengine's resume) and load_from (mmengine's Runner) load weights-only:
    the file is refused naming itself and the global, its payload never runs, the exit status says so."""
    marker = tmp_path / "payload_ran"
    evil = write_malicious_checkpoint(tmp_path / "iter_1.pth", marker)
    train = load_tool("train")
    opts = tiny_cfg_options(tiny_models, synthetic_data, "captions.json") + _short(1)
    for how, extra in (("--resume", ["--resume", str(evil)]), ("load_from", [])):
        argv = [STAGE1, "--work-dir", str(tmp_path / how), *extra, "--cfg-options", *opts]
        assert train.main(argv + ([f"load_from={evil}"] if how == "load_from" else [])) == 1, how
        err = capsys.readouterr().err
        assert f"train: error: refusing to load checkpoint '{evil}'" in err and "posix.system" in err, (how, err)
        assert not marker.exists(), how


def test_stock_xtuner_cli_resumes_through_the_allow_list(tiny_models, synthetic_data, tmp_path):
    """The .pth hook puts the stock CLI's seed read and resume under the allow-list (mmengine's HistoryBuffer ...),
    without switching the weights-only check off."""
    opts = tiny_cfg_options(tiny_models, synthetic_data, "captions.json") + _short(1)
    assert load_tool("train").main([STAGE1, "--work-dir", str(tmp_path / "w"), "--cfg-options", *opts]) == 0
    first = _checkpoint(tmp_path / "w")
    env = dict(os.environ, PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])
    env.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
    run = subprocess.run([str(Path(sys.executable).parent / "xtuner"), "train", STAGE1, "--work-dir",
                          str(tmp_path / "w"), "--resume", str(first), "--cfg-options", *opts,
                          "train_cfg.max_epochs=2"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    output = run.stdout + run.stderr
    assert "resumed epoch: 0, iter: 1" in output, output[-3000:]
    assert _checkpoint(tmp_path / "w").name == "iter_2.pth", output[-3000:]
