"""What the causal cross-attention mask buys: the same tiny model trained with and without it, on questions whose
answer depends on frame order, evaluated at the training frame count and at more frames.

Without the CCAM mask the projector is plain cross-attention with unmasked query self-attention and, as there
is no temporal position embedding, a function of the *set* of frames: it cannot tell "red, then blue" from
"blue, then red", or a shape moving left from one moving right. With the mask, query i summarises the first
i/N of the video whatever the frame count, which is also what lets a projector trained on 16 frames run on
many more (the paper's headline claim).

:func:`run_ablation` trains each variant with ``tools/train.py`` (a subprocess per variant: mmengine's runner
keeps global state), converts it in memory, answers the test questions at each frame count and scores each
reply by an answer rule (:func:`videoccam.evaluation.grounding.answer_accuracy`: normalised exact match by default,
the answers' content words for the generated task). ``tools/ablate_temporal.py`` is its command line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from videoccam.checkpoint import resolve_checkpoint
from videoccam.evaluation.grounding import AccuracyReport, AnswerRule, answer_accuracy, qa_items

ROOT = Path(__file__).resolve().parents[2]
TRAIN_TOOL = ROOT / "tools" / "train.py"
DEFAULT_CONFIG = ROOT / "configs" / "tiny" / "videoccam_tiny_qwen2_temporal.py"
VARIANTS: dict[str, dict[str, Any]] = {
    "ccam": {"model.projector.causal_mask": True},
    "no_mask": {"model.projector.causal_mask": False},
}
"""Variant name -> the config overrides that make it (everything else is shared: seed, data, steps)."""


@dataclass
class AblationResult:
    """Accuracy per variant, frame count and task."""

    reports: dict[str, dict[int, AccuracyReport]] = field(default_factory=dict)

    def accuracy(self, variant: str, frames: int, task: str | None = None) -> float:
        """Accuracy (0-1) of ``variant`` at ``frames`` over all tasks, or over one ``task``."""
        return self.reports[variant][frames].accuracy(None if task is None else [task])

    @property
    def tasks(self) -> list[str]:
        seen: dict[str, None] = {}
        for by_frames in self.reports.values():
            for report in by_frames.values():
                seen.update(dict.fromkeys(report.tallies))
        return list(seen)

    def to_dict(self) -> dict[str, Any]:
        """``{"ccam": {"16": acc, ...}, "no_mask": {...}, "per_task": {variant: {frames: {task: acc}}}}``."""
        out: dict[str, Any] = {
            variant: {str(t): self.accuracy(variant, t) for t in by_frames}
            for variant, by_frames in self.reports.items()
        }
        out["per_task"] = {
            variant: {str(t): {task: self.accuracy(variant, t, task) for task in report.tallies}
                      for t, report in by_frames.items()}
            for variant, by_frames in self.reports.items()
        }  # fmt: skip
        out["rules"] = {task: rule for by_frames in self.reports.values() for report in by_frames.values()
                        for task, rule in report.rules.items()}  # fmt: skip
        return out

    def table(self) -> str:
        """A printable table: one row per variant and frame count; columns: all tasks, then each task."""
        tasks = self.tasks
        header = f"{'variant':<10}{'frames':>7}{'all':>8}" + "".join(f"{task:>11}" for task in tasks)
        lines = [header, "-" * len(header)]
        for variant, by_frames in self.reports.items():
            for t in by_frames:
                cells = "".join(f"{self.accuracy(variant, t, task):>11.3f}" for task in tasks)
                lines.append(f"{variant:<10}{t:>7}{self.accuracy(variant, t):>8.3f}{cells}")
        return "\n".join(lines)


def train_variant(
    config: str | os.PathLike,
    work_dir: str | os.PathLike,
    cfg_options: Sequence[str],
    seed: int,
    log_file: str | os.PathLike | None = None,
    feature_cache: str | os.PathLike | None = None,
) -> Path:
    """Train one variant with ``tools/train.py`` in a subprocess; returns its last checkpoint.

    ``feature_cache``: a folder for the frozen vision tower's features (``tools/train.py --feature-cache``), so
    that only the first epoch (of the first variant) decodes videos and runs SigLIP.

    Raises:
        RuntimeError: training failed or wrote no checkpoint (naming the log file).
    """
    work_dir = Path(work_dir).resolve()  # the subprocess runs in the repository root
    work_dir.mkdir(parents=True, exist_ok=True)
    log_path = Path(log_file) if log_file else work_dir / "train_stdout.log"
    cmd = [sys.executable, str(TRAIN_TOOL), str(config), "--work-dir", str(work_dir), "--cfg-options",
           f"randomness.seed={seed}", *cfg_options]  # fmt: skip
    if feature_cache is not None:
        cmd += ["--feature-cache", str(Path(feature_cache).resolve())]
    env = dict(os.environ, PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    with open(log_path, "w") as log:
        status = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT).returncode
    if status != 0:
        tail = log_path.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"training {work_dir.name} failed (exit {status}); log: {log_path}\n{tail}")
    try:
        return Path(resolve_checkpoint(work_dir))
    except FileNotFoundError as e:
        raise RuntimeError(f"training {work_dir.name} wrote no checkpoint: {e}") from None


def evaluate_variant(
    config: str | os.PathLike,
    checkpoint: str | os.PathLike,
    cfg_options: Mapping[str, Any],
    records: Sequence[Mapping[str, Any]],
    root: str | os.PathLike,
    frame_counts: Sequence[int],
    batch_size: int = 32,
    rule: AnswerRule | None = None,
) -> dict[int, AccuracyReport]:
    """Accuracy of a trained variant on ``records`` at each frame count (uniform sampling), replies scored by
    ``rule`` (default: normalised exact match)."""
    from videoccam.dataset.video_io import FrameSampling
    from videoccam.evaluation.backend import load_backend

    backend = load_backend(config=str(config), checkpoint=str(checkpoint), cfg_options=dict(cfg_options))
    items = qa_items(records, root, source="test data")
    reports = {}
    for frames in frame_counts:
        sampling = FrameSampling(num_frames=frames)

        def load_frames(path: Path, kind: str, sampling: FrameSampling = sampling) -> list:
            return sampling.load(path, kind).frames

        reports[frames] = answer_accuracy(backend, items, load_frames, rule, batch_size=batch_size)
    return reports


def plot_results(result: AblationResult, path: str | os.PathLike, title: str = "") -> Path:
    """Accuracy against frames per variant (solid: all questions; dashed: per task) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    colors = {"ccam": "tab:blue", "no_mask": "tab:red"}
    styles = ["--", ":", "-."]
    for variant, by_frames in result.reports.items():
        frames = sorted(by_frames)
        color = colors.get(variant)
        ax.plot(frames, [result.accuracy(variant, t) for t in frames], "o-", color=color, lw=2,
                label=f"{variant}: all")  # fmt: skip
        for style, task in zip(styles, result.tasks):
            ax.plot(frames, [result.accuracy(variant, t, task) for t in frames], style, color=color, alpha=0.7,
                    label=f"{variant}: {task}")  # fmt: skip
    all_frames = sorted({t for by_frames in result.reports.values() for t in by_frames})
    ax.set_xscale("log", base=2)
    ax.set_xticks(all_frames, [str(t) for t in all_frames])
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("frames at evaluation")
    ax.set_ylabel("accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    ax.set_title(title or "CCAM mask vs plain cross-attention on temporal questions", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def run_ablation(
    train_file: str | os.PathLike,
    test_file: str | os.PathLike,
    root: str | os.PathLike,
    out_dir: str | os.PathLike,
    config: str | os.PathLike = DEFAULT_CONFIG,
    train_frames: int = 16,
    eval_frames: Sequence[int] = (16, 64),
    seed: int = 0,
    cfg_options: Mapping[str, Any] | None = None,
    variants: Mapping[str, Mapping[str, Any]] = VARIANTS,
    batch_size: int = 32,
    feature_cache: str | os.PathLike | None = None,
    rule: AnswerRule | None = None,
) -> AblationResult:
    """Train every variant on ``train_file`` and evaluate it on ``test_file``; writes ``out_dir/results.json``.

    Args:
        train_file, test_file: data in the project's format (design.md section 4); test records are single-question
            media records, scored by ``rule``, per ``task`` field if present.
        root: folder the media paths are relative to.
        out_dir: work dirs of the variants, ``results.json``, ``results.png``.
        config: training config (default: the tiny temporal recipe).
        train_frames: frames per training video.
        eval_frames: frame counts to evaluate at; each must be <= the projector's ``num_queries``.
        seed: training seed (the same for every variant).
        cfg_options: further config overrides for every variant (``{"key": value}``; values must survive a
            round trip through ``--cfg-options key=value``: paths, numbers, booleans).
        variants: variant name -> its own config overrides.
        batch_size: questions per generation batch.
        feature_cache: folder of the frozen vision tower's features, shared by the variants (None: decode and
            encode every step; the config must not train the vision tower otherwise).
        rule: how a reply is scored against its answer (default :class:`~videoccam.evaluation.grounding.ExactMatch`:
            the whole answer after normalisation of case, punctuation and articles).

    Returns:
        The accuracies.

    Raises:
        FileNotFoundError: a data file or the root is missing.
        RuntimeError: a training run failed.
    """
    for path in (train_file, test_file, root):
        if not Path(path).exists():
            raise FileNotFoundError(f"{path} does not exist")
    records = json.loads(Path(test_file).read_text()) if str(test_file).endswith(".json") else [
        json.loads(line) for line in Path(test_file).read_text().splitlines() if line.strip()
    ]  # fmt: skip
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shared = {
        "train_dataloader.dataset.data_path": str(Path(train_file).resolve()),
        "train_dataloader.dataset.data_root": str(Path(root).resolve()),
        "train_dataloader.dataset.num_frames": train_frames,
        **dict(cfg_options or {}),
    }
    result = AblationResult()
    for name, own in variants.items():
        overrides = {**shared, **dict(own)}
        # --cfg-options strings: mmengine's DictAction reads True/False/None and numbers back as such
        options = [f"{key}={value}" for key, value in overrides.items()]
        print(f"[{name}] training ({', '.join(f'{k}={v}' for k, v in own.items())}), log: "
              f"{out / name / 'train_stdout.log'}", flush=True)  # fmt: skip
        checkpoint = train_variant(config, out / name, options, seed, feature_cache=feature_cache)
        print(f"[{name}] evaluating at {list(eval_frames)} frames on {len(records)} questions", flush=True)
        result.reports[name] = evaluate_variant(config, checkpoint, overrides, records, root, eval_frames,
                                                batch_size=batch_size, rule=rule)  # fmt: skip
    (out / "results.json").write_text(json.dumps(result.to_dict(), indent=1) + "\n")
    return result
