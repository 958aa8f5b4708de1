"""What a training run leaves to read: its log file, the error that stopped it, its first and last loss.

mmengine's Runner writes ``<work_dir>/<timestamp>/<timestamp>.log`` (a rank suffix when every rank logs) and
``<work_dir>/last_checkpoint`` at each save. An exception that stops training is printed by Python, not logged,
so the log of a failed run does not say why it stopped unless the entry point writes the error into it
(``tools/train.py`` does, through :meth:`RunWatcher.record_failure`).

* :func:`newest_log` and :func:`last_error_line` find a work dir's newest log and the last error recorded in it
  (``videoccam.checkpoint.resolve_checkpoint`` points to them when a work dir holds no checkpoint);
* :class:`RunWatcher` follows the mmengine run started in this process: its log file, the error written into it,
  the loss of its first and last iteration.

Nothing here imports mmengine at module level.
"""

from __future__ import annotations

import logging
import os
import re
import traceback
from pathlib import Path
from typing import Any

__all__ = ["RunWatcher", "display_path", "last_error_line", "newest_log"]

# iterations averaged for the summary's "mean of the first / last" (mmengine's default logging window)
SUMMARY_WINDOW = 10
# the tail of a log read for its last error: an error is written at the end of a failed run
ERROR_TAIL_BYTES = 256 * 1024
# a traceback's last line ("FileNotFoundError: ...", "videoccam.dataset.records.RecordError: ...") or an
# mmengine ERROR record ("2026/12/07 18:39:07 - mmengine - ERROR - ...")
_ERROR_LINE = re.compile(r"^(?:[\w.]+(?:Error|Exception|Interrupt)(?::|$)|.* - ERROR - )")


def display_path(path: str | os.PathLike) -> str:
    """``path`` relative to the current folder when it lies below it (as a user typed it), else absolute."""
    path = Path(path).absolute()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def newest_log(work_dir: str | os.PathLike) -> Path | None:
    """The newest mmengine log of ``work_dir`` (``<timestamp>/<timestamp>*.log``), or None.

    Runs are ordered by their timestamp folder (mmengine's ``%Y%m%d_%H%M%S``), rank 0's file first within a run.
    Time and memory grow with the number of runs in the work dir (one ``glob``).
    """
    logs = [p for p in Path(work_dir).glob("*/*.log") if p.is_file() and p.stem.startswith(p.parent.name)]
    if not logs:
        return None
    return max(logs, key=lambda p: (p.parent.name, p.stem == p.parent.name))


def last_error_line(log: str | os.PathLike) -> str | None:
    """The last error recorded in ``log``: a traceback's final line or an mmengine ERROR record; None if none.

    Reads only the last :data:`ERROR_TAIL_BYTES` of the file, so time and memory are bounded whatever its size.
    """
    with open(log, "rb") as f:
        f.seek(max(0, os.fstat(f.fileno()).st_size - ERROR_TAIL_BYTES))
        lines = f.read().decode("utf-8", errors="replace").splitlines()
    found = [line.strip() for line in lines if _ERROR_LINE.match(line.strip())]
    if not found:
        return None
    return found[-1].split(" - ERROR - ", 1)[-1]


def error_summary(error: BaseException) -> str:
    """What names ``error``: our own errors by their message (written to be read alone; a data error's second line
    says where to look next), others with their type (``KeyError: 'lr'``)."""
    message = str(error)
    if type(error).__module__.startswith("videoccam") and message:
        return message
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


class RunWatcher:
    """The mmengine run that starts in this process after the watcher is made: its log, error and losses.

    Make it right before starting training (``xtuner.tools.train.main``); the run is the newest mmengine
    ``MMLogger`` created since (the Runner names its logger and message hub after the experiment).
    """

    def __init__(self) -> None:
        from mmengine.logging import MMLogger

        self._before = set(MMLogger._instance_dict)

    def _logger(self) -> Any:
        from mmengine.logging import MMLogger

        new = [logger for name, logger in MMLogger._instance_dict.items() if name not in self._before]
        runs = [logger for logger in new if logger.log_file]
        return runs[-1] if runs else None

    @property
    def log_file(self) -> Path | None:
        """The run's log file, or None when the run failed before mmengine's Runner started."""
        logger = self._logger()
        return Path(logger.log_file) if logger is not None else None

    @property
    def work_dir(self) -> Path | None:
        log = self.log_file
        return log.parent.parent if log is not None else None

    def record_failure(self, error: BaseException) -> None:
        """Write ``error`` and its traceback into the run's log file (not to the console), if there is a log."""
        logger = self._logger()
        if logger is None:
            return
        text = "".join(traceback.format_exception(type(error), error, error.__traceback__)).rstrip()
        where = traceback.extract_tb(error.__traceback__)[-1:] or [traceback.FrameSummary(__file__, 0, "?")]
        record = logger.makeRecord(logger.name, logging.ERROR, where[0].filename, where[0].lineno or 0,
                                   f"training failed:\n{text}", None, None, func=where[0].name)  # fmt: skip
        for handler in logger.handlers:
            if isinstance(handler, logging.FileHandler):
                handler.handle(record)
                handler.flush()

    def failure_lines(self, error: BaseException) -> list[str]:
        """The lines a user reads last when training failed: the error, then where the full log is."""
        first, *rest = error_summary(error).splitlines() or [""]
        lines = [f"error: {first}", *rest]  # a message's later lines (a data error's pointer) as lines of their own
        if self.log_file is None:
            lines.append("training did not start (no log was written): the error above is all there is")
        else:
            lines.append(f"training failed; full log: {display_path(self.log_file)} "
                         f"(work dir {display_path(self.work_dir)})")  # fmt: skip
        return lines

    def losses(self) -> tuple[int, list[float]]:
        """``(first iteration, loss of every iteration from it)`` of the run; ``(1, [])`` if it ran none.

        Read from mmengine's message hub, which keeps every iteration's loss (the console and the log show a mean
        over the logging window). A resumed run's history starts where the resumed checkpoint's did. Time and memory
        grow with the iterations run (one float each, copied from the hub's buffer).
        """
        from mmengine.logging import MessageHub

        logger = self._logger()
        if logger is None or logger.instance_name not in MessageHub._instance_dict:
            return 1, []
        hub = MessageHub.get_instance(logger.instance_name)
        buffer = hub.log_scalars.get("train/loss")
        if buffer is None:
            return 1, []
        values = [float(v) for v in buffer.data[0]]
        last = int(hub.get_info("iter", len(values) - 1)) + 1  # "iter" counts the iterations before the last one
        return last - len(values) + 1, values

    def summary_lines(self) -> list[str]:
        """What a finished run did: iterations and first / last loss, the checkpoint written, the log."""
        from videoccam.checkpoint import resolve_checkpoint

        if self.log_file is None:
            return []
        first, values = self.losses()
        last = first + len(values) - 1
        if not values:
            done = "finished; no iteration was run"
        elif len(values) == 1:
            done = f"finished 1 iteration, loss {values[0]:.4f}"
        else:
            done = f"finished {len(values)} iterations, loss {values[0]:.4f} (iteration {first}) -> {values[-1]:.4f} " \
                   f"(iteration {last})"  # fmt: skip
            if len(values) >= 2 * SUMMARY_WINDOW:
                head, tail = values[:SUMMARY_WINDOW], values[-SUMMARY_WINDOW:]
                done += (f"; mean of the first / last {SUMMARY_WINDOW}: {sum(head) / len(head):.4f} -> "
                         f"{sum(tail) / len(tail):.4f}")  # fmt: skip
        try:
            checkpoint = f"checkpoint {display_path(resolve_checkpoint(self.work_dir))}"
        except FileNotFoundError:
            checkpoint = f"no checkpoint was written in {display_path(self.work_dir)}"
        return [done, f"{checkpoint}; log {display_path(self.log_file)}"]
