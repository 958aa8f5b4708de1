"""Known, harmless notices of the pinned stack, kept out of our tools' output: the one list, and why each is safe.

Every training run and tool printed these, and a user had to read around them to find what matters. Each is
silenced by its exact text, so any other warning of the same library still shows:

* PEFT, at import: ``FutureWarning: Support for Transformers < 5.6 is deprecated in PEFT and will be removed in the
  next release, v1.0``. ``setup.py`` bounds ``peft<1.0`` (tested: 0.22), so the release that drops support
  is never installed next to the pinned transformers 4.48.
* mmengine, once per run: ``"FileClient" will be deprecated in future ...`` and ``"HardDiskBackend" is the alias of
  "LocalBackend" and the former will be deprecated in future``: mmengine's own CheckpointHook uses its old file
  API; mmengine is pinned (==0.10.6), so the API stays.
* mmengine: ``Failed to search registry with scope "mmengine" in the "builder" registry tree. As a workaround, the
  current "builder" registry in "xtuner" is used ...``: xtuner builds its config's ``dict(type=...)`` nodes with
  its own ``BUILDER`` registry, which has no child scope ``mmengine``; the fallback it announces is what xtuner
  intends (the same for any registry name).
* mmengine, at the start of training: ``Dataset VideoCCAMDataset has no metainfo. ``dataset_meta`` in visualizer
  will be None.``: a visualizer's dataset metadata (class names, palettes) is for drawing detection or
  segmentation results; ours (``TrainingVisualizer``) writes scalars and text only.
* mmengine, at each epoch boundary: ``Reach the end of the dataloader, it will be restarted and continue to
  iterate ...``: ``TokenMeanTrainLoop`` (xtuner's loops too) is iteration-based and counts epochs by restarting the
  dataloader on purpose, so every epoch sees the whole dataset once, reshuffled.
* DeepSpeed, at import, on a torch built without CUDA only: ``Setting accelerator to CPU. If you have GPU or other
  accelerator, we were unable to detect it.``: such a torch cannot use a GPU anyway; on a CUDA build the line
  stays, since there it means a GPU was not found.
* Gradio 5.50, on every call: ``DeprecationWarning`` announcing Gradio 6 API changes: ``setup.py`` bounds
  ``gradio<6``.

Where: only entry points call :func:`install`: each ``tools/*.py`` ``main()`` (``tools/quickstart.py`` included),
and the ``.pth`` hook of ``videoccam/xtuner_compat.py`` in the stock ``xtuner`` CLI's own processes (the ``xtuner``
command and the ``xtuner/tools/*.py`` scripts it starts; a program of yours that imports xtuner is left alone).
Importing a module of ``videoccam`` silences nothing. How: a warnings filter
for the Python warnings; a :class:`logging.Filter` on DeepSpeed's logger; for mmengine, whose loggers are
created per run, ``MMLogger.callHandlers`` drops the known records (wrapped right after ``mmengine.logging`` is
imported, or at once if it is; idempotent).
"""

from __future__ import annotations

import functools
import logging
import re
import sys
import warnings

__all__ = ["MMENGINE_NOTICES", "install", "is_known_mmengine_notice"]

# the messages' beginnings, as mmengine 0.10.6 words them (see the module docstring for why each is harmless)
MMENGINE_NOTICES = re.compile(
    r'"FileClient" will be deprecated in future'
    r'|"HardDiskBackend" is the alias of "LocalBackend" and the former will be deprecated in future'
    r'|Failed to search registry with scope "mmengine" in the "\w+" registry tree\. As a workaround, the current '
    r'"\w+" registry in "xtuner" is used to build instance'
    r"|Dataset \w+ has no metainfo\. ``dataset_meta`` in visualizer will be None"
    r"|Reach the end of the dataloader, it will be restarted and continue to iterate"
)
PEFT_NOTICE = r"Support for Transformers < 5\.6 is deprecated in PEFT and will be removed in the next release"
GRADIO_NOTICE = r".*[Gg]radio 6"
DEEPSPEED_CPU_NOTICE = "Setting accelerator to CPU. If you have GPU or other accelerator, we were unable to detect it."

_installed = False


def is_known_mmengine_notice(record: logging.LogRecord) -> bool:
    """True for a WARNING record of :data:`MMENGINE_NOTICES`; errors and every other message pass."""
    return record.levelno == logging.WARNING and MMENGINE_NOTICES.match(str(record.msg)) is not None


def _quiet_mmengine(module) -> None:
    """Wrap ``MMLogger.callHandlers`` of ``mmengine.logging.logger`` to drop the known records (idempotent)."""
    logger_class = module.MMLogger
    original = logger_class.callHandlers
    if getattr(original, "_videoccam_quiet", False):
        return

    @functools.wraps(original)
    def call_handlers(self, record):
        if not is_known_mmengine_notice(record):
            original(self, record)

    call_handlers._videoccam_quiet = True
    logger_class.callHandlers = call_handlers


def _keep_deepspeed_record(record: logging.LogRecord) -> bool:
    """DeepSpeed's logger filter: drops its CPU-accelerator notice where torch is built without CUDA / ROCm.

    Decided when the record comes (DeepSpeed has imported torch by then), so installing imports no torch.
    """
    if record.getMessage() != DEEPSPEED_CPU_NOTICE:
        return True
    torch = sys.modules.get("torch")
    return torch is None or torch.version.cuda is not None or getattr(torch.version, "hip", None) is not None


def install() -> None:
    """Silence the notices of the module docstring in this process (idempotent). Entry points only."""
    global _installed
    if _installed:
        return
    warnings.filterwarnings("ignore", message=PEFT_NOTICE, category=FutureWarning)
    warnings.filterwarnings("ignore", message=GRADIO_NOTICE, category=DeprecationWarning)
    # deepspeed.utils.logging creates its logger with logging.getLogger("DeepSpeed"): a filter added now stays
    logging.getLogger("DeepSpeed").addFilter(_keep_deepspeed_record)
    if "mmengine.logging.logger" in sys.modules:
        _quiet_mmengine(sys.modules["mmengine.logging.logger"])
    else:
        from videoccam.xtuner_compat import patch_after_import

        patch_after_import({"mmengine.logging.logger": _quiet_mmengine})
    _installed = True
