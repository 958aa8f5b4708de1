"""videoccam/quiet.py: the known notices of the pinned stack go, emitted by the libraries' own code; other warnings
and errors stay. Each check runs in a fresh interpreter (the filters are process-wide), with and without install()."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from tests.conftest import ROOT, isolated_env, isolated_python_path

# the libraries' own code paths that print the notices, then warnings that must stay
EMIT = textwrap.dedent(
    """
    import json, logging, sys, warnings
    if INSTALL:
        from videoccam import quiet
        quiet.install()
    import peft                   # FutureWarning: Support for Transformers < 5.6 is deprecated in PEFT ...
    import deepspeed              # on a CPU-only torch: Setting accelerator to CPU ...
    from mmengine.fileio import FileClient
    from mmengine.logging import print_log
    from mmengine.registry import DefaultScope
    from mmengine.runner.loops import _InfiniteDataloaderIterator
    FileClient()                  # "FileClient" will be deprecated ... and "HardDiskBackend" is the alias ...
    DefaultScope.get_instance("quiet_test", scope_name="mmengine")
    from xtuner.registry import BUILDER
    BUILDER.build(dict(type=dict))  # Failed to search registry with scope "mmengine" in the "builder" registry tree
    loader = _InfiniteDataloaderIterator([1])
    next(loader), next(loader)    # Reach the end of the dataloader, it will be restarted ...
    print_log("Dataset VideoCCAMDataset has no metainfo. ``dataset_meta`` in visualizer will be None.",
              logger="current", level=logging.WARNING)  # the text of mmengine/runner/loops.py
    # what must still show
    print_log("a real mmengine warning", logger="current", level=logging.WARNING)
    print_log('"FileClient" will be deprecated in future, but as an ERROR', logger="current", level=logging.ERROR)
    warnings.warn("a real FutureWarning", FutureWarning)
    logging.getLogger("DeepSpeed").warning("a real DeepSpeed warning")
    import torch
    print(json.dumps({"cpu_only_torch": torch.version.cuda is None}))
    """
)


def _run(install: bool, tmp_path) -> tuple[str, bool]:
    prelude = f"import sys\nsys.path[:0] = {[str(ROOT), *isolated_python_path()]!r}\nINSTALL = {install}\n"
    result = subprocess.run([sys.executable, "-S", "-c", prelude + EMIT], cwd=tmp_path, env=isolated_env(tmp_path),
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
    output = result.stdout + result.stderr
    return output, json.loads(result.stdout.strip().splitlines()[-1])["cpu_only_torch"]


KNOWN = [
    "Support for Transformers < 5.6 is deprecated in PEFT",
    '"FileClient" will be deprecated in future. Please use io functions',
    '"HardDiskBackend" is the alias of "LocalBackend" and the former will be deprecated in future',
    'Failed to search registry with scope "mmengine" in the "builder" registry tree',
    "Reach the end of the dataloader, it will be restarted",
    "Dataset VideoCCAMDataset has no metainfo",
]
REAL = ["a real mmengine warning", "but as an ERROR", "a real FutureWarning", "a real DeepSpeed warning"]
DEEPSPEED_CPU = "Setting accelerator to CPU"


def test_known_notices_go_and_real_warnings_stay(tmp_path):
    loud, cpu_only = _run(False, tmp_path)
    # the control: without install() the libraries print every notice (so the check below can fail)
    assert all(text in loud for text in KNOWN + REAL), loud[-4000:]
    assert (DEEPSPEED_CPU in loud) == cpu_only

    quiet, _ = _run(True, tmp_path)
    assert not [text for text in KNOWN + [DEEPSPEED_CPU] if text in quiet], quiet[-4000:]
    assert all(text in quiet for text in REAL), quiet[-4000:]


def test_install_is_idempotent_and_wraps_an_already_imported_mmengine_once(tmp_path):
    body = textwrap.dedent(
        """
        import json, warnings
        import mmengine.logging.logger as mm
        from videoccam import quiet
        quiet.install(); quiet.install()
        quiet._installed = False; quiet.install()  # a second wrap would stack
        wrapped = mm.MMLogger.callHandlers
        print(json.dumps({"quiet": wrapped._videoccam_quiet,
                          "inner_is_original": not getattr(wrapped.__wrapped__, "_videoccam_quiet", False)}))
        """
    )
    prelude = f"import sys\nsys.path[:0] = {[str(ROOT), *isolated_python_path()]!r}\n"
    result = subprocess.run([sys.executable, "-S", "-c", prelude + body], cwd=tmp_path, env=isolated_env(tmp_path),
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"quiet": True, "inner_is_original": True}
