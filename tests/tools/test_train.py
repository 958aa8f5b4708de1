"""The embedded default's configs train through the real config path (tools/train.py and the xtuner CLI)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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


def test_stock_xtuner_cli_trains_and_failure_is_visible_only_in_artefacts(tiny_models, synthetic_data, tmp_path):
    """`xtuner train` works through the .pth hook; a broken run still exits 0, so callers check artefacts."""
    env = dict(os.environ, PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])
    xtuner = str(Path(sys.executable).parent / "xtuner")
    opts = tiny_cfg_options(tiny_models, synthetic_data, "captions.json") + _short(1)
    run = subprocess.run([xtuner, "train", STAGE1, "--work-dir", str(tmp_path / "ok"), "--cfg-options", *opts],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0
    assert _checkpoint(tmp_path / "ok").exists(), run.stdout[-2000:] + run.stderr[-2000:]

    bad = opts + ["train_dataloader.dataset.data_path=/nonexistent/data.json"]
    run = subprocess.run([xtuner, "train", STAGE1, "--work-dir", str(tmp_path / "bad"), "--cfg-options", *bad],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0  # the CLI hides the failure ...
    assert not (tmp_path / "bad" / "last_checkpoint").exists()  # ... the artefacts do not
    # ... and our wrapper exits non-zero with the reason
    run = subprocess.run([sys.executable, str(ROOT / "tools/train.py"), STAGE1, "--work-dir", str(tmp_path / "bad2"),
                          "--cfg-options", *bad], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode != 0
    assert "data file not found: /nonexistent/data.json" in run.stderr


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
