"""The visualizer of the recipes: mmengine's json scalars always, TensorBoard event files when it is installed.

mmengine's ``LoggerHook`` hands every logged scalar (loss, lr, grad_norm, the throughput figures) to the runner's
visualizer, which passes it to each of its backends. :class:`TrainingVisualizer` is mmengine's ``Visualizer``
with two backends: ``LocalVisBackend`` (``<work_dir>/<timestamp>/vis_data/scalars.json``, read by
``tools/plot_logs.py``) and, when ``tensorboard=True`` and the ``tensorboard`` package is installed
(part of the default install), ``TensorboardVisBackend`` (event files in the same ``vis_data`` folder:
``tensorboard --logdir work_dirs/``). ``tensorboard=False`` (``--cfg-options visualizer.tensorboard=False``)
turns the event files off; without the package the run continues with the json scalars and says so once.

:func:`add_text` writes text (the answers of ``SampleAnswersHook``) to whichever backends can hold it, since
mmengine's ``Visualizer`` has no text method: TensorBoard's TEXT tab, and ``texts.jsonl`` beside ``scalars.json``.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import os.path as osp
from typing import Any

from mmengine.dist import is_main_process
from mmengine.logging import print_log
from mmengine.visualization import LocalVisBackend, TensorboardVisBackend, Visualizer

__all__ = ["TrainingVisualizer", "add_text", "tensorboard_available"]

TEXT_FILE = "texts.jsonl"


def tensorboard_available() -> bool:
    """Whether ``torch.utils.tensorboard`` can write event files (the ``tensorboard`` package is installed)."""
    return importlib.util.find_spec("tensorboard") is not None


class TrainingVisualizer(Visualizer):
    """mmengine's ``Visualizer`` with json scalars and, by default, TensorBoard.

    Args:
        name: the instance name (the Runner passes its experiment name).
        tensorboard: add a ``TensorboardVisBackend`` when the ``tensorboard`` package is installed; without it, a
            warning says how to install it and training continues with the json scalars.
        vis_backends: backends besides TensorBoard; default ``[dict(type="LocalVisBackend")]`` (``scalars.json``).
        save_dir: the run's log dir (the Runner sets it; backends write to ``<save_dir>/vis_data``).
        **kwargs: passed to ``Visualizer``.
    """

    def __init__(
        self,
        name: str = "visualizer",
        tensorboard: bool = True,
        vis_backends: list[dict] | None = None,
        save_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        backends = [dict(b) for b in vis_backends] if vis_backends is not None else [dict(type=LocalVisBackend)]
        self.tensorboard = bool(tensorboard) and tensorboard_available()
        if tensorboard and not self.tensorboard:
            print_log(
                "TensorBoard logging is on (visualizer.tensorboard=True) but the tensorboard package is not "
                "installed (the default install has it): pip install tensorboard, or set "
                "visualizer.tensorboard=False. The curves are still written to vis_data/scalars.json "
                "(python tools/plot_logs.py WORK_DIR draws them).",
                "current",
                logging.WARNING,
            )
        if self.tensorboard:
            backends.append(dict(type=TensorboardVisBackend))
        super().__init__(name=name, vis_backends=backends, save_dir=save_dir, **kwargs)

    def add_text(self, tag: str, text: str, step: int = 0) -> None:
        """Write ``text`` under ``tag`` at ``step`` (see :func:`add_text`)."""
        add_text(self, tag, text, step)


def add_text(visualizer: Visualizer, tag: str, text: str, step: int = 0) -> None:
    """Write ``text`` under ``tag`` at ``step`` to each backend of ``visualizer`` that can hold text.

    ``TensorboardVisBackend``: ``SummaryWriter.add_text`` (TensorBoard's TEXT tab). ``LocalVisBackend``: one json
    line ``{"tag", "step", "text"}`` appended to ``texts.jsonl`` in its ``vis_data`` folder. Other backends are
    skipped. Only the main process writes (as mmengine's backends do).

    Args:
        visualizer: any mmengine ``Visualizer`` (the runner's ``runner.visualizer``).
        tag: the name the text is filed under, e.g. ``"sample_answers/0"``.
        text: the text (TensorBoard renders it as markdown).
        step: the training iteration.
    """
    if not is_main_process():
        return
    for backend in getattr(visualizer, "_vis_backends", {}).values():
        if isinstance(backend, TensorboardVisBackend):
            backend.experiment.add_text(tag, text, step)
            backend.experiment.flush()
        elif isinstance(backend, LocalVisBackend) and backend._save_dir is not None:
            os.makedirs(backend._save_dir, exist_ok=True)
            with open(osp.join(backend._save_dir, TEXT_FILE), "a", encoding="utf-8") as f:
                f.write(json.dumps({"tag": tag, "step": int(step), "text": text}, ensure_ascii=False) + "\n")
