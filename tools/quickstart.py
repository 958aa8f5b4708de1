"""The embedded default, end to end on CPU: tiny models + synthetic videos -> stage 1 -> stage 2.

Steps (each skipped when its output exists, unless --force):
  1. tools/make_tiny_models.py     a tiny SigLIP pretrained here to see the shapes' colours and forms, a tiny
                                   Qwen2 LLM pretrained here to read its context
  2. tools/make_synthetic_data.py  mp4 videos of coloured shapes, images, captions.json / train.json
     (both through their library functions in videoccam/synthetic/)
  3. tools/train.py stage 1        projector only           (configs/tiny/videoccam_tiny_qwen2_stage1.py),
                                   `xtuner train` with the frozen SigLIP's features cached after the first epoch
  4. `xtuner train` stage 2        projector + LoRA on LLM and SigLIP, from stage 1's checkpoint
  5. tools/convert_to_hf.py        the trained model as a Hugging Face folder
  6. tools/plot_logs.py            loss, learning-rate and grad-norm curves of both stages in WORK_DIR/curves.png
  7. the grounding gate            does the converted model use its frames? On the held-out val.json: the
                                   answer-token loss with the real frames, with frames shuffled across
                                   samples and with blank frames, and the accuracy of the colour / shape
                                   questions against chance, each reply scored by its colour and shape words
                                   (videoccam/evaluation/grounding.py)
  8. tools/chat.py                 one answer about a held-out video

The stock `xtuner` CLI exits 0 even when training fails, so after each stage this script checks that the
checkpoint exists and that the logged loss went down. It exits non-zero (saying why) unless both stages wrote
checkpoints, both losses fell, and the model clearly uses its video: its real-frame loss at most half the
shuffled- and the blank-frame loss, its content accuracy at least twice chance (and 3 binomial standard errors
above it), and each content task at least twice its own chance. It ends with a summary: the losses, each
content task's accuracy against its chance, and the wall and CPU seconds of each step.

Every process runs torch on one thread (TORCH_THREADS; set OMP_NUM_THREADS to change it). --seed changes the
tiny models, the data and both trainings.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
STAGE1 = ROOT / "configs/tiny/videoccam_tiny_qwen2_stage1.py"
STAGE2 = ROOT / "configs/tiny/videoccam_tiny_qwen2_stage2.py"
TORCH_THREADS = 1
"""Intra-op threads of torch in every process of the quickstart (unless OMP_NUM_THREADS is set): the tiny models
are too small to gain from a second thread, stage 2's two DataLoader workers decode on the other core, and on a
busy machine a second thread spins (measured under load: 14x the CPU time for the same LLM pretraining steps)."""
LOSS_RE = re.compile(r"Iter\(train\)\s+\[\s*(\d+)/\s*(\d+)\].*?\bloss: ([0-9.]+)")


class StageFailed(RuntimeError):
    pass


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # the xtuner CLI shells out to a bare `python`: make it this interpreter
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.setdefault("HF_DATASETS_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    # one intra-op thread per process (see main)
    env.setdefault("OMP_NUM_THREADS", str(TORCH_THREADS))
    return env


def _xtuner_cli() -> list[str]:
    exe = Path(sys.executable).parent / "xtuner"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("xtuner")
    if found is None:
        raise StageFailed("the `xtuner` command is not installed; run `bash tools/install.sh`")
    return [found]


def read_losses(work_dir: Path) -> list[tuple[int, float]]:
    """(iteration, loss) pairs from the newest mmengine text log under ``work_dir``."""
    logs = sorted(work_dir.glob("*/*.log"), key=lambda p: p.stat().st_mtime)
    if not logs:
        return []
    return [(int(m.group(1)), float(m.group(3))) for m in LOSS_RE.finditer(logs[-1].read_text())]


def last_checkpoint(work_dir: Path) -> Path | None:
    from videoccam.checkpoint import resolve_checkpoint

    try:
        return Path(resolve_checkpoint(work_dir))
    except FileNotFoundError:
        return None


def run_stage(name: str, config: Path, work_dir: Path, extra: list[str], force: bool,
              launcher: list[str] | None = None) -> Path:
    """Train one stage (``xtuner train``, or ``launcher``) and check its checkpoint and loss."""
    ckpt = last_checkpoint(work_dir)
    if ckpt is not None and not force:
        print(f"[{name}] checkpoint exists, skipping: {ckpt}")
        return ckpt
    if work_dir.exists():
        shutil.rmtree(work_dir)
    cmd = [*(launcher or [*_xtuner_cli(), "train"]), str(config), "--work-dir", str(work_dir), *extra]
    print(f"[{name}] $ {' '.join(cmd)}", flush=True)
    start = time.time()
    subprocess.run(cmd, cwd=ROOT, env=_env(), check=False)  # its exit status is always 0: check artefacts
    from videoccam.checkpoint import resolve_checkpoint

    try:
        ckpt = Path(resolve_checkpoint(work_dir))
    except FileNotFoundError as e:  # the message names the run's log and its last error
        raise StageFailed(f"[{name}] training failed: {e}") from None
    losses = read_losses(work_dir)
    if len(losses) < 2:
        raise StageFailed(f"[{name}] found fewer than two logged losses in {work_dir}")
    head = sum(v for _, v in losses[:2]) / 2
    tail = sum(v for _, v in losses[-2:]) / 2
    print(f"[{name}] {time.time() - start:.0f} s, loss {head:.3f} (first logs) -> {tail:.3f} (last logs), "
          f"checkpoint {ckpt}")
    # "clearly": at least 10% lower; late-training noise of these runs is about 2-3% (std of logged losses)
    if not tail < 0.9 * head:
        raise StageFailed(f"[{name}] loss did not fall clearly (by at least 10%): {head:.3f} -> {tail:.3f}")
    return ckpt


def plot_curves(work: Path) -> Path:
    """Both stages' loss, lr and grad-norm curves, one after the other, in ``work/curves.png``."""
    out = work / "curves.png"
    subprocess.run([sys.executable, str(ROOT / "tools/plot_logs.py"), str(work / "stage1"), str(work / "stage2"),
                    "--sequential", "--labels", "stage 1", "stage 2", "--out", str(out)],
                   cwd=ROOT, env=_env(), check=True)  # fmt: skip
    return out


def check_grounding(hf_dir: Path, config: Path, data_dir: Path, out_json: Path) -> Any:
    """The gate: the converted model must clearly use its frames on the held-out ``val.json``.

    Returns:
        The :class:`~videoccam.evaluation.grounding.GroundingReport` (also written to ``out_json``).

    Raises:
        StageFailed: naming each criterion that failed.
    """
    from videoccam import xtuner_compat

    xtuner_compat.install()  # this process builds the training dataset (xtuner) from the config
    from videoccam.config import build_from_cfg, load_config
    from videoccam.evaluation.backend import load_backend
    from videoccam.evaluation.grounding import ContentWords, evaluate_grounding
    from videoccam.synthetic.shapes import CONTENT_CHANCE, CONTENT_VOCABULARIES

    cfg = load_config(str(config))
    dataset_cfg = cfg.train_dataloader.dataset
    dataset_cfg.data_path = str(data_dir / "val.json")
    dataset_cfg.data_root = str(data_dir)
    dataset = build_from_cfg(dataset_cfg)
    records = json.loads((data_dir / "val.json").read_text())
    print(f"[grounding] {len(records)} held-out samples of {data_dir / 'val.json'}", flush=True)
    report = evaluate_grounding(load_backend(str(hf_dir)), dataset, records, CONTENT_CHANCE,
                                ContentWords(CONTENT_VOCABULARIES))  # fmt: skip
    print(report.table())
    failures = report.failures()
    out_json.write_text(json.dumps(report.to_dict() | {"failures": failures}, indent=1) + "\n")
    if failures:
        raise StageFailed("the trained model does not clearly use its video:\n  " + "\n  ".join(failures))
    print(f"[grounding] OK: the model uses its frames (details in {out_json})")
    return report


class PhaseClock:
    """Wall and CPU seconds (user + system, this process and its finished children) of each phase."""

    def __init__(self) -> None:
        self.phases: list[tuple[str, float, float]] = []
        self.start_wall = self._last_wall = time.time()
        self.start_cpu = self._last_cpu = self.cpu()

    @staticmethod
    def cpu() -> float:
        own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    def lap(self, phase: str) -> None:
        """Close ``phase`` (it began where the previous one ended) and print its times."""
        wall, cpu = time.time(), self.cpu()
        self.phases.append((phase, wall - self._last_wall, cpu - self._last_cpu))
        self._last_wall, self._last_cpu = wall, cpu
        _, phase_wall, phase_cpu = self.phases[-1]
        print(f"[quickstart] {phase}: {phase_wall:.0f} s wall, {phase_cpu:.0f} s CPU (total {wall - self.start_wall:.0f} s)",
              flush=True)

    def table(self) -> str:
        rows = [f"  {phase:<24} {wall:6.0f} s wall {cpu:6.0f} s CPU" for phase, wall, cpu in self.phases]
        rows.append(f"  {'total':<24} {time.time() - self.start_wall:6.0f} s wall "
                    f"{self.cpu() - self.start_cpu:6.0f} s CPU")  # fmt: skip
        return "\n".join(rows)


def summary(report: Any, clock: PhaseClock, seed: int) -> str:
    """The run in a few lines: the losses, each content task's accuracy against its chance, the phases' times."""
    losses = report.losses
    lines = [f"quickstart summary (seed {seed}):",
             "  answer-token loss, real / shuffled / blank frames: "
             + " / ".join(f"{losses[c]:.3f}" for c in ("real", "shuffled", "blank")),
             f"  content accuracy {report.content_accuracy:.1%} (chance {report.chance:.1%}):"]  # fmt: skip
    for task, chance in report.task_chance.items():
        tally = report.accuracy.tallies[task]
        accuracy = tally.correct / tally.total
        lines.append(f"    {task:<12} {accuracy:6.1%}  = {accuracy / chance:.1f} x chance {chance:.1%}")
    return "\n".join([*lines, clock.table()])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", default="work_dirs/quickstart", help="where checkpoints and logs go")
    parser.add_argument("--force", action="store_true", help="redo every step even if its output exists")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the tiny models, the synthetic data and both trainings (default: 0); steps "
                        "whose output exists are kept whatever seed made it: add --force to redo them")
    args = parser.parse_args(argv)
    from videoccam import quiet

    quiet.install()
    os.chdir(ROOT)
    work = Path(args.work_dir)
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", TORCH_THREADS)))
    from videoccam.synthetic.shapes import generate
    from videoccam.synthetic.tiny_models import make_tiny_models

    clock = PhaseClock()
    seed = ["--seed", str(args.seed)]
    try:
        if args.force:
            shutil.rmtree(work / "feature_cache", ignore_errors=True)
        # the two models the tiny configs use (the tests build their own, Phi-3 included)
        make_tiny_models("work_dirs/tiny_models", force=args.force, seed=args.seed, names=("siglip", "qwen2"))
        clock.lap("tiny models")
        generate("work_dirs/synthetic_data", force=args.force, seed=args.seed)
        clock.lap("synthetic data")
        # stage 1 trains the projector only: the frozen SigLIP's features are computed in the first epoch and
        # read from the cache afterwards (tools/train.py is `xtuner train` plus --feature-cache)
        stage1 = run_stage("stage 1", STAGE1, work / "stage1", [*seed, "--feature-cache", str(work / "feature_cache")],
                           args.force, launcher=[sys.executable, str(ROOT / "tools/train.py")])  # fmt: skip
        clock.lap("stage 1")
        # two DataLoader workers decode the next batches while the model trains on this one
        stage2 = run_stage("stage 2", STAGE2, work / "stage2", [*seed, "--cfg-options",
            f"model.pretrained_pth={stage1}", "train_dataloader.num_workers=2",
            "train_dataloader.persistent_workers=True"], args.force)  # fmt: skip
        clock.lap("stage 2")
        hf_dir = work / "hf"
        subprocess.run([sys.executable, str(ROOT / "tools/convert_to_hf.py"), str(STAGE2), str(stage2), str(hf_dir)],
                       cwd=ROOT, env=_env(), check=True)  # fmt: skip
        print(f"curves of both stages: {plot_curves(work)}")
        clock.lap("conversion and curves")
        report = check_grounding(hf_dir, STAGE2, Path("work_dirs/synthetic_data"), work / "grounding.json")
        clock.lap("grounding gate")
        video = sorted(Path("work_dirs/synthetic_data/videos").glob("val_*.mp4"))[0]
        question = "What color is the first shape?"
        chat = subprocess.run([sys.executable, str(ROOT / "tools/chat.py"), "--model", str(hf_dir), "--video",
                               str(video), "--prompt", question, "--max-new-tokens", "24"],
                              cwd=ROOT, env=_env(), check=True, stdout=subprocess.PIPE, text=True)  # fmt: skip
        print(f"[chat] {video}: {question} -> {chat.stdout.strip()}")
        clock.lap("chat")
    except (StageFailed, subprocess.CalledProcessError) as e:
        print(clock.table())
        print(f"QUICKSTART FAILED: {e}", file=sys.stderr)
        return 1
    print(summary(report, clock, args.seed))
    print(f"quickstart OK in {time.time() - clock.start_wall:.0f} s: stage 1 and stage 2 trained, checkpoints "
          "written, losses fell, and the model uses its video (real frames beat shuffled and blank ones, every "
          "content task at least twice chance)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
