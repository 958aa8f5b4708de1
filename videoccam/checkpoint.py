"""Load checkpoint files without running code from them.

A ``.pth`` file is a pickle, and unpickling calls whatever functions the file names (``os.system`` among them).
Checkpoints travel between people (a stage-1 projector, a colleague's run), so every checkpoint this project
loads goes through torch's weights-only unpickler: it builds tensors, containers and plain values, and calls or
builds only the globals of an allow-list. The allow-list (:func:`allowed_globals`) holds exactly what the
checkpoints of our training runs contain, found by loading them (``tests/test_checkpoint.py``):

* mmengine's training state: ``HistoryBuffer`` (the message hub's logs), which pickles its statistics methods
  as ``getattr(HistoryBuffer, "mean")`` (so ``builtins.getattr`` is allowed for exactly those four attributes),
  the numpy arrays, scalars and dtypes it holds, and ``ConfigDict`` (DeepSpeed's ``ds_config``);
* DeepSpeed's optimizer shards: ``LossScaler`` / ``DynamicLossScaler``, ``ZeroStageEnum``, ``fragment_address``
  (only when deepspeed is imported: whatever reads a DeepSpeed folder imports it first).

A file that needs any other global is refused with :class:`UnsafeCheckpointError`, naming the file and the
global. Two ways in:

* :func:`load_checkpoint` for our own loads (``VideoCCAMModel.load_pretrained``, the converters, chat and eval
  through them);
* :func:`weights_only_loading` around third-party code that calls ``torch.load`` itself (mmengine's resume,
  DeepSpeed's engine, xtuner's ZeRO reader; ``videoccam/xtuner_compat.py`` puts it around their entry points).
  DeepSpeed and xtuner pass ``weights_only=False`` explicitly, so inside the block ``torch.load`` is replaced by
  a weights-only version (restored on exit; loading is single-threaded in every caller).

Which file or folder a user's path names is decided in one place, :func:`resolve_checkpoint` (an mmengine
``.pth``, a DeepSpeed checkpoint folder, or a work dir through its ``last_checkpoint``); every loader goes through
it. A work dir without a checkpoint gets :class:`NoCheckpointError`, which says what is there instead: the
training log of the run that wrote nothing, and the last error recorded in it.

Nothing changes at import; there is no process-wide setting.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import sys
from collections.abc import Iterator
from typing import Any

__all__ = ["NoCheckpointError", "UnsafeCheckpointError", "allowed_globals", "is_deepspeed_checkpoint",
           "load_checkpoint", "resolve_checkpoint", "weights_only_loading"]

# HistoryBuffer's default statistics (mmengine/logging/history_buffer.py ``_set_default_statistics``)
HISTORY_BUFFER_STATISTICS = ("min", "max", "current", "mean")


class UnsafeCheckpointError(ValueError):
    """A checkpoint file needs a global outside the allow-list; it was not loaded (nothing in it ran)."""


class NoCheckpointError(FileNotFoundError):
    """A path names no checkpoint; the message says what is there instead (a failed run's log, other files)."""


def is_deepspeed_checkpoint(path: str | os.PathLike) -> bool:
    """A DeepSpeed checkpoint folder (what mmengine saves as ``iter_N.pth/`` under DeepSpeed): it holds the
    ``*_model_states.pt`` files that xtuner's ZeRO reader needs."""
    return os.path.isdir(path) and any(name.endswith("model_states.pt") for name in os.listdir(path))


def _no_checkpoint_message(folder: str) -> str:
    """Why ``folder`` (a folder with no ``last_checkpoint``, no ``*.pth`` and no DeepSpeed states) is no checkpoint."""
    from videoccam.engine.run_log import display_path, last_error_line, newest_log

    log = newest_log(folder)
    if log is None:
        return (f"{folder} holds no checkpoint (no last_checkpoint, no *.pth file, no DeepSpeed *_model_states.pt) "
                "and no training log (<timestamp>/<timestamp>.log): give a checkpoint file, a DeepSpeed checkpoint "
                "folder or the work dir of a training run")  # fmt: skip
    error = last_error_line(log)
    why = (f"its last error: {error}" if error else
           "it records no error (`xtuner train` prints a run's error to the console only; `python tools/train.py` "
           "writes it into the log too)")  # fmt: skip
    return (f"{folder} holds no checkpoint: the training run in this work dir saved none (it failed, or has not "
            f"reached its first save). Its log is {display_path(log)}; {why}")


def resolve_checkpoint(path: str | os.PathLike) -> str:
    """The checkpoint that ``path`` names: an mmengine ``.pth`` file, a DeepSpeed checkpoint folder, or a work dir
    (the checkpoint its ``last_checkpoint`` file names).

    A ``last_checkpoint`` that names a missing file is followed into the work dir itself (a work dir copied from
    another machine names absolute paths there).

    Returns:
        The path of the file or DeepSpeed folder to load (a folder only if :func:`is_deepspeed_checkpoint`).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        NoCheckpointError: ``path`` is a folder that holds no checkpoint; the message says what it holds instead,
            e.g. the log of a run that failed before saving, with the last error recorded in it.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if not os.path.isdir(path) or is_deepspeed_checkpoint(path):
        return path
    marker = os.path.join(path, "last_checkpoint")
    if os.path.isfile(marker):
        with open(marker) as f:
            named = f.read().strip()
        for candidate in (named, os.path.join(path, os.path.basename(named))):
            if named and os.path.exists(candidate):
                return candidate
        raise NoCheckpointError(f"{marker} names {named!r}, which does not exist (deleted, or the work dir was moved); "
                                "give the checkpoint file itself")  # fmt: skip
    saved = sorted(name for name in os.listdir(path) if name.endswith(".pth"))
    if saved:
        raise NoCheckpointError(f"{path} has no last_checkpoint file to say which checkpoint is the last; it holds "
                                f"{', '.join(saved)}: give one of them")  # fmt: skip
    raise NoCheckpointError(_no_checkpoint_message(path))


def _history_buffer_statistic(owner: Any, name: str) -> Any:
    """Stands in for ``builtins.getattr`` while unpickling: only ``getattr(HistoryBuffer, <statistic>)``.

    A pickled function is stored as ``getattr(its class, name)``; mmengine's ``HistoryBuffer`` pickles its
    statistics methods that way. Any other ``getattr`` from a file is refused.
    """
    from mmengine.logging import HistoryBuffer

    if owner is HistoryBuffer and name in HISTORY_BUFFER_STATISTICS:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f"GLOBAL builtins.getattr called as getattr({owner!r}, {name!r}); only getattr(HistoryBuffer, "
        f"{'|'.join(HISTORY_BUFFER_STATISTICS)}) is allowed"
    )


def _numpy_globals() -> list[Any]:
    import numpy as np

    try:
        from numpy._core import multiarray  # numpy >= 2
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray
    # a file written under numpy 1.x names numpy.core.multiarray, one written under 2.x numpy._core.multiarray
    entries: list[Any] = [np.ndarray, np.dtype]
    for name in ("_reconstruct", "scalar"):
        entries += [(getattr(multiarray, name), f"{package}.multiarray.{name}") for package in ("numpy.core",
                                                                                                  "numpy._core")]
    # unpickling a dtype builds an instance of its class (numpy.dtypes.Float64DType ...). Float64 and Int64 are
    # the ones found (HistoryBuffer's logs and counts); the other numeric ones hold a value logged as such
    entries += sorted({type(np.dtype(c)) for c in (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8,
                       np.uint16, np.uint32, np.uint64, np.float16, np.float32, np.float64)}, key=str)  # fmt: skip
    return entries


def _deepspeed_globals() -> list[Any]:
    if "deepspeed" not in sys.modules:  # a DeepSpeed folder is only read by code that has imported deepspeed
        return []
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    return [LossScaler, DynamicLossScaler, ZeroStageEnum, fragment_address]


def allowed_globals() -> list[Any]:
    """The globals a checkpoint may name (for ``torch.serialization.safe_globals``); see the module docstring."""
    from mmengine.config import ConfigDict
    from mmengine.logging import HistoryBuffer

    return [HistoryBuffer, (_history_buffer_statistic, "builtins.getattr"), ConfigDict, *_numpy_globals(),
            *_deepspeed_globals()]  # fmt: skip


def _refusal(path: Any, error: Exception) -> UnsafeCheckpointError:
    """``error`` (torch's weights-only UnpicklingError) as a message that names the file and the global."""
    message = str(error)
    found = re.search(r"GLOBAL (\S+?)(?: was not an allowed global| whose module| called as (getattr\(.*?\));)",
                      message)
    if found:
        what = f"the global {found.group(1)}" + (f", as {found.group(2)}" if found.group(2) else "")
    else:  # not a global: torch's own reason, without its advice to load with weights_only=False
        reason = message.split("WeightsUnpickler error:", 1)[-1].strip().split("\n\n", 1)[0].strip()
        what = f"something the weights-only unpickler refuses ({reason})"
    return UnsafeCheckpointError(
        f"refusing to load checkpoint {os.fspath(path) if isinstance(path, (str, os.PathLike)) else path!r}: it "
        f"needs {what}, which is not on the allow-list of what training checkpoints hold (tensors, plain values, "
        "mmengine's and DeepSpeed's training state). Unpickling it could run code from the file, so nothing of it "
        "was loaded. If you trust where the file comes from, re-save only its tensors in a separate Python "
        "session (torch.save(state_dict, 'weights.pth')) and load that."
    )


def _weights_only_load(load: Any, f: Any, map_location: Any = None, *, mmap: Any = None, **kwargs: Any) -> Any:
    """``load(f, weights_only=True)`` (``load`` is torch.load) under the allow-list; refusals name the file."""
    import torch

    kwargs.pop("pickle_module", None)  # the weights-only unpickler is the pickle module
    kwargs.pop("weights_only", None)
    try:
        with torch.serialization.safe_globals(allowed_globals()):
            return load(f, map_location=map_location, weights_only=True, mmap=mmap, **kwargs)
    except pickle.UnpicklingError as error:
        raise _refusal(f, error) from None


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` with the allow-list: what the file holds, with no code run.

    Args:
        path: a checkpoint file (mmengine ``.pth``, a DeepSpeed shard, a plain ``torch.save`` of tensors).
        map_location: as for ``torch.load``.

    Returns:
        The unpickled object (an mmengine checkpoint is a dict with ``state_dict``, ``meta``, ...).

    Raises:
        UnsafeCheckpointError: if the file needs a global outside :func:`allowed_globals`.
    """
    import torch

    return _weights_only_load(torch.load, path, map_location)


@contextlib.contextmanager
def weights_only_loading() -> Iterator[None]:
    """Within the block every ``torch.load`` is :func:`load_checkpoint`'s: weights-only under the allow-list, also
    where the caller passes ``weights_only=False`` (DeepSpeed, xtuner), and refusals name the file.

    Re-entrant; ``torch.load`` is restored on exit. Meant for third-party code that loads checkpoints itself.
    """
    import torch

    outer = torch.load
    if getattr(outer, "_videoccam_weights_only", False):  # nested: already in force
        yield
        return

    def load(f: Any, map_location: Any = None, pickle_module: Any = None, **kwargs: Any) -> Any:
        return _weights_only_load(outer, f, map_location, **kwargs)

    load._videoccam_weights_only = True  # type: ignore[attr-defined]
    torch.load = load
    try:
        yield
    finally:
        torch.load = outer
