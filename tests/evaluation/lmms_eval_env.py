"""A lean virtual environment with the real lmms-eval, for tests/evaluation/test_lmms_eval_model.py.

lmms-eval 0.7.3 declares ~50 dependencies (torchvision, wandb, openai, spacy, ...) that its model API, its task
loader and a local task never import; installing them would replace this project's pins (a CUDA torch through
torchvision, transformers). The test venv therefore holds only:

* ``lmms-eval==0.7.3`` without its dependencies;
* the few modules its evaluator, task loader and CLI import that the main ``.venv`` lacks (``EXTRAS``), and
  ``filelock<4`` (lmms-eval imports ``filelock._api``, gone in filelock 4, which the main venv has);
* this checkout, editable and without dependencies, so its ``lmms_eval.models`` entry point is registered;
* a ``.pth`` line appending the main venv's site-packages (torch, transformers, datasets, decord, ...): no second
  copy of torch. Only the path is added, the ``.pth`` files in it are not run, so neither the main venv's
  editable ``videoccam`` nor its xtuner hook is active there.

Built at ``<repo>/.venv-lmms-eval`` (git-ignored) on first use and reused while its stamp (versions and package
list) matches: CI builds it once per run, about 40 s.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

LMMS_EVAL = "lmms-eval==0.7.3"
# what `import lmms_eval.evaluator, lmms_eval.tasks` and the CLI need beyond the main venv (found by importing)
NO_DEPS = ["sacrebleu", "portalocker", "tabulate", "colorama", "lxml", "evaluate", "tenacity", "filelock<4"]
WITH_DEPS = ["pytablewriter"]  # the CLI's results table (7 small pure-python packages)


def _stamp(root: Path) -> dict:
    return {"lmms_eval": LMMS_EVAL, "no_deps": NO_DEPS, "with_deps": WITH_DEPS, "python": sys.version,
            "base": sysconfig.get_paths()["purelib"], "root": str(root)}  # fmt: skip


def _pip(python: Path, *args: str) -> None:
    cmd = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--disable-pip-version-check",
           *args]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")


def ensure_lmms_eval_venv(root: Path) -> Path:
    """The python of the lmms-eval test venv under ``root`` (built, or reused when its stamp matches)."""
    target = root / ".venv-lmms-eval"
    python = target / "bin" / "python"
    stamp_file = target / "videoccam_stamp.json"
    stamp = _stamp(root)
    if python.exists() and stamp_file.is_file() and json.loads(stamp_file.read_text()) == stamp:
        return python
    shutil.rmtree(target, ignore_errors=True)
    venv.EnvBuilder(with_pip=False).create(target)  # the main venv's pip installs into it (pip --python)
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    Path(purelib, "_videoccam_base_venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _pip(python, "--no-deps", LMMS_EVAL, *NO_DEPS)
    _pip(python, *WITH_DEPS)
    _pip(python, "--no-deps", "--no-build-isolation", "-e", str(root))
    stamp_file.write_text(json.dumps(stamp))
    return python
