"""Make xtuner 0.2.0 + mmengine 0.10.6 run on a CPU-only torch build (and keep working on GPUs), and load
their checkpoints without running code from them.

Patches 1-3 and 5 each fix one measured failure of the stock stack on CPU (see ``shared/install-notes.md``); patch 4
makes its checkpoint loads safe:

1. ``xtuner.dataset`` imports ``internvl_dataset``, which imports torchvision. On torch 2.13.0+cpu no working
   torchvision wheel exists, so when torchvision is absent that one module is replaced by a stub whose class
   raises a clear ImportError if anybody actually uses it.
2. ``xtuner.utils.device.get_torch_device()`` returns ``torch.cpu`` on a CPU host and xtuner calls
   ``.is_bf16_supported()`` on it (``LLaVAModel._prepare_for_flash_attn``); ``torch.cpu`` has no such function.
3. ``mmengine.dist.utils._init_dist_pytorch`` calls ``torch.cuda.set_device`` unconditionally, which breaks
   ``torchrun`` + gloo on a CPU host.
4. Checkpoints load weights-only (torch >= 2.6's default, which mmengine's resume fails with an
   ``Unsupported global: HistoryBuffer``, and DeepSpeed and xtuner switch off): mmengine's resume / ``load_from``
   (``Runner.load_or_resume``, ``FlexibleRunner.load_or_resume``, which reach DeepSpeed's engine),
   ``xtuner.tools.utils.get_seed_from_checkpoint`` (the seed read before a resume) and
   ``xtuner.model.utils.guess_load_checkpoint`` (``xtuner convert pth_to_hf``, xtuner's own models) each run
   inside :func:`videoccam.checkpoint.weights_only_loading`: the allow-list of what mmengine's and DeepSpeed's
   checkpoints hold applies while they load, also where DeepSpeed and xtuner pass ``weights_only=False``. A
   module not imported yet is patched right after its first import (:class:`_PatchAfterImport`), so installing
   costs no import of mmengine or xtuner. No environment variable is set.
5. On a host without CUDA, DeepSpeed's communication backend (``deepspeed.comm.torch.TorchBackend``) JIT-builds
   its shared-memory op with g++ and ninja at every start, under a lock file in the torch extensions folder; a
   process killed while it holds the lock (a timeout, ``kill -9``) leaves the file behind, and every later
   DeepSpeed start on that machine waits for it forever (seen: a test worker idle for 10 minutes in
   ``FileBaton.wait``). The op only initialises a shared-memory fast path for DeepSpeed's CPU inference
   all-reduce, which training does not use: ``build_shm_op`` returns None there, so DeepSpeed runs over plain
   gloo, builds nothing and needs no compiler. On CUDA hosts nothing changes.

Who applies what (nothing here runs at import; importing any module of ``videoccam`` changes no global state,
``tests/test_xtuner_compat.py`` checks it module by module in a fresh interpreter):

* :func:`install` (all five patches, idempotent) is called only by entry points: each ``tools/*.py`` ``main()``
  that may touch xtuner or mmengine, the ``.pth`` hook below, and tests that train.
* :func:`make_xtuner_importable` (patch 1 alone) is called by library functions right before they import
  ``xtuner.dataset`` (config loading, tokenisation, tokenizer export). It only puts a stub for
  ``xtuner.dataset.internvl_dataset`` into ``sys.modules`` when torchvision is missing, so that an import which
  would fail succeeds; it changes no behaviour of torch, mmengine or xtuner.
* The stock ``xtuner`` CLI starts ``python xtuner/tools/train.py`` in a fresh interpreter; for it,
  ``install_pth()`` writes a one-line ``.pth`` file into site-packages that registers :class:`_XtunerImportHook`,
  a meta-path finder that calls :func:`install` the first time anything imports ``xtuner`` (it imports nothing
  itself until then, so other Python programs pay nothing). In an environment with that hook, importing a module
  of ``videoccam`` that imports ``xtuner`` therefore installs the patches: that is the hook's doing (an entry
  point the user installed with ``tools/install.sh``), not the library's. Your own scripts that train on CPU
  without the hook call :func:`install` first. In the stock CLI's own processes (``xtuner/tools/*.py``) the hook
  also silences the known, harmless notices listed in ``videoccam/quiet.py``, as our tools do.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import sysconfig
import types
from collections.abc import Callable
from pathlib import Path

PTH_NAME = "videoccam_xtuner_compat.pth"
_installed = False

# patch 4: module -> (class name or None for a module function, function name) that loads checkpoints
CHECKPOINT_LOADERS = {
    "mmengine.runner.runner": ("Runner", "load_or_resume"),
    "mmengine.runner._flexible_runner": ("FlexibleRunner", "load_or_resume"),
    "xtuner.tools.utils": (None, "get_seed_from_checkpoint"),
    "xtuner.model.utils": (None, "guess_load_checkpoint"),
}


def make_xtuner_importable() -> None:
    """Patch 1 only: let ``import xtuner.dataset`` succeed without torchvision (idempotent).

    Library code calls it right before importing ``xtuner.dataset``; it changes nothing when torchvision is
    installed or the stub is already there.
    """
    name = "xtuner.dataset.internvl_dataset"
    if name in sys.modules or importlib.util.find_spec("torchvision") is not None:
        return
    module = types.ModuleType(name)

    class InternVL_V1_5_Dataset:  # noqa: N801 - xtuner's name
        def __init__(self, *args, **kwargs):
            raise ImportError(
                "InternVL_V1_5_Dataset needs torchvision, which is not installed in this CPU environment; "
                "install the [gpu] extra on a CUDA machine"
            )

    module.InternVL_V1_5_Dataset = InternVL_V1_5_Dataset
    sys.modules[name] = module


def install() -> None:
    """Apply the five patches (idempotent). Entry points call it before importing ``xtuner``; library code never does."""
    global _installed
    if _installed:
        return
    import torch

    make_xtuner_importable()
    if not hasattr(torch.cpu, "is_bf16_supported"):
        torch.cpu.is_bf16_supported = lambda including_emulation=True: False
    if not torch.cuda.is_available():
        torch.cuda.set_device = lambda *args, **kwargs: None
    pending = {}
    if not torch.cuda.is_available():
        if "deepspeed.comm.torch" in sys.modules:
            _no_shm_op(sys.modules["deepspeed.comm.torch"])
        else:
            pending["deepspeed.comm.torch"] = _no_shm_op
    for module_name, (owner, function) in CHECKPOINT_LOADERS.items():
        if module_name in sys.modules:
            _load_weights_only(sys.modules[module_name], owner, function)
        else:
            pending[module_name] = functools.partial(_load_weights_only, owner=owner, function=function)
    if pending:
        patch_after_import(pending)
    _installed = True


def _no_shm_op(module: types.ModuleType) -> None:
    """Patch 5: DeepSpeed's CPU shared-memory op is not built (``build_shm_op`` returns None, as DeepSpeed's own
    does where the op is incompatible)."""
    module.build_shm_op = lambda: None


def patch_after_import(patches: dict[str, Callable[[types.ModuleType], None]]) -> None:
    """Call ``patches[name](module)`` right after module ``name`` is first imported (:class:`_PatchAfterImport`),
    so that a patch costs no import of its module. For modules not imported yet; entry points only."""
    sys.meta_path.insert(0, _PatchAfterImport(dict(patches)))


def _load_weights_only(module: types.ModuleType, owner: str | None, function: str) -> None:
    """Patch 4 for one function: ``module.[owner.]function`` runs inside ``weights_only_loading()`` (idempotent)."""
    from videoccam.checkpoint import weights_only_loading

    target = getattr(module, owner) if owner else module
    original = getattr(target, function)
    if getattr(original, "_videoccam_weights_only", False):
        return

    @functools.wraps(original)
    def guarded(*args, **kwargs):
        with weights_only_loading():
            return original(*args, **kwargs)

    guarded._videoccam_weights_only = True
    setattr(target, function, guarded)


class _PatchAfterImport(importlib.abc.MetaPathFinder):
    """Calls ``patches[name](module)`` right after module ``name`` has run, before anyone imports from it.

    Finds the module with the ordinary path finder and wraps its loader's ``exec_module``; steps aside once every
    patch is applied.
    """

    def __init__(self, patches: dict[str, Callable[[types.ModuleType], None]]):
        self.patches = patches

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in self.patches:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        patch, run = self.patches.pop(fullname), spec.loader.exec_module
        if not self.patches:
            sys.meta_path[:] = [f for f in sys.meta_path if f is not self]

        def exec_module(module):
            run(module)
            patch(module)

        spec.loader.exec_module = exec_module
        return spec


def _runs_xtuner_cli() -> bool:
    """This process is the stock ``xtuner`` CLI (the ``xtuner`` command, or the script it starts:
    ``xtuner train`` runs ``python <site-packages>/xtuner/tools/train.py``, ``xtuner convert``
    ``.../xtuner/tools/model_converters/...``), not a program of the user's that imports xtuner."""
    script = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path()
    parts = script.parts
    return script.name == "xtuner" or any(parts[i : i + 2] == ("xtuner", "tools") for i in range(len(parts) - 2))


class _XtunerImportHook(importlib.abc.MetaPathFinder):
    """Runs :func:`install` right before the first ``import xtuner``, then steps aside."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "xtuner":
            return None
        sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _XtunerImportHook)]
        install()
        return None  # let the normal finders import xtuner


def register_import_hook() -> None:
    """Entry of the ``.pth`` file: cheap, imports nothing heavy.

    In the stock CLI's own processes it also silences the known, harmless notices (``videoccam/quiet.py``) at
    once, before the CLI imports the libraries that print them, as our tools' ``main()`` do.
    """
    if _runs_xtuner_cli():
        from videoccam import quiet

        quiet.install()
    if "xtuner" in sys.modules:
        install()
    elif not any(isinstance(f, _XtunerImportHook) for f in sys.meta_path):
        sys.meta_path.insert(0, _XtunerImportHook())


def pth_path() -> Path:
    return Path(sysconfig.get_paths()["purelib"]) / PTH_NAME


def install_pth() -> Path:
    """Write the ``.pth`` file that makes the stock ``xtuner`` CLI load :func:`install` in its subprocesses."""
    path = pth_path()
    path.write_text("import videoccam.xtuner_compat as _v; _v.register_import_hook()\n")
    return path


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        description="Install the xtuner CPU-compatibility hook so that the stock `xtuner` CLI works "
        "(writes a .pth file into this environment's site-packages)."
    )
    parser.add_argument("--uninstall", action="store_true", help="remove the .pth file instead")
    args = parser.parse_args(argv)
    if args.uninstall:
        pth_path().unlink(missing_ok=True)
        print(f"removed {pth_path()}")
    else:
        print(f"wrote {install_pth()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
