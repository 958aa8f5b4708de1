"""Benchmark evaluation: MVBench, Video-MME, MLVU and VideoVista (design.md section 7).

Entry points: :data:`BENCHMARKS` (name -> evaluator class), :func:`~videoccam.evaluation.runner.evaluate`,
:func:`~videoccam.evaluation.backend.load_backend`; the CLI is ``tools/eval.py``.

Files: ``benchmark.py`` (the base class each benchmark implements), one file per benchmark, ``samples.py``
(questions and their media), ``prompts.py`` (the multiple-choice prompt), ``scoring.py`` (reading the option letter
of a reply), ``metrics.py`` (accuracy per group), ``store.py`` (resumable predictions), ``runner.py`` (the loop),
``sharding.py`` (blocks of whole videos, batches, shares of the ranks), ``distributed.py`` (ranks under torchrun),
``report.py`` (results files and tables), ``backend.py`` (the model behind the loop).
"""

from videoccam.evaluation.backend import (
    HFVideoCCAMBackend,
    ScriptedBackend,
    VideoQABackend,
    build_scripted_backend,
    load_backend,
)
from videoccam.evaluation.benchmark import Benchmark
from videoccam.evaluation.mlvu import MLVU
from videoccam.evaluation.mvbench import MVBench, videochat2_frame_indices
from videoccam.evaluation.runner import evaluate
from videoccam.evaluation.scoring import parse_option_letter, score_reply
from videoccam.evaluation.store import PredictionStore
from videoccam.evaluation.videomme import VideoMME, parse_srt, select_subtitles
from videoccam.evaluation.videovista import VideoVista

BENCHMARKS: dict[str, type[Benchmark]] = {
    "mvbench": MVBench,
    "videomme": VideoMME,
    "mlvu": MLVU,
    "videovista": VideoVista,
}

__all__ = [
    "BENCHMARKS",
    "Benchmark",
    "HFVideoCCAMBackend",
    "MLVU",
    "MVBench",
    "PredictionStore",
    "ScriptedBackend",
    "VideoMME",
    "VideoQABackend",
    "VideoVista",
    "build_scripted_backend",
    "evaluate",
    "load_backend",
    "parse_option_letter",
    "parse_srt",
    "score_reply",
    "select_subtitles",
    "videochat2_frame_indices",
]
