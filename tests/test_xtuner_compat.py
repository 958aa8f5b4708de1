"""videoccam/xtuner_compat.py: the CPU patches are applied by entry points only, never by importing the library.

Each check runs in a fresh interpreter started with ``-S`` (no site-packages ``.pth`` files: neither the editable
install's finder, which maps ``videoccam`` to another checkout, nor the ``videoccam_xtuner_compat.pth`` hook) and
an explicit ``sys.path``: this checkout first, then the parent's entries that hold no ``videoccam`` package.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import ROOT, isolated_env, isolated_python_path

LIBRARY_MODULES = sorted(
    ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
    for path in (ROOT / "videoccam").rglob("*.py")
)

# Global state the patches change (videoccam/xtuner_compat.py), read in the child.
SNAPSHOT = textwrap.dedent(
    """
    import logging, os, sys, warnings
    import torch

    def quieted():
        # whether videoccam/quiet.py's filters are in force (they belong to entry points too)
        logger = sys.modules.get("mmengine.logging.logger")
        return {"peft warning filter": any("in PEFT" in str(getattr(f[1], "pattern", "")) for f in warnings.filters),
                "DeepSpeed logger filter": bool(logging.getLogger("DeepSpeed").filters),
                "MMLogger quiet": logger is not None and getattr(logger.MMLogger.callHandlers, "_videoccam_quiet",
                                                                 False)}

    def snapshot():
        return {
            **quieted(),
            "torch.cuda.set_device": id(torch.cuda.set_device),
            "torch.load": id(torch.load),
            "torch.cpu.is_bf16_supported": hasattr(torch.cpu, "is_bf16_supported"),
            "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"),
            "xtuner.dataset.internvl_dataset stub": "xtuner.dataset.internvl_dataset" in sys.modules,
            "import hook": any(type(f).__name__ == "_XtunerImportHook" for f in sys.meta_path),
            "post-import patcher": any(type(f).__name__ == "_PatchAfterImport" for f in sys.meta_path),
        }

    def loaders_guarded():
        # whether each checkpoint-loading entry of mmengine / xtuner runs weights-only (patch 4)
        from mmengine.runner import FlexibleRunner, Runner
        import xtuner.model.utils, xtuner.tools.utils
        from xtuner.tools.utils import get_seed_from_checkpoint  # as xtuner/tools/train.py binds it
        import deepspeed.comm.torch
        guarded = {name: getattr(fn, "_videoccam_weights_only", False) for name, fn in {
            "Runner.load_or_resume": Runner.load_or_resume,
            "FlexibleRunner.load_or_resume": FlexibleRunner.load_or_resume,
            "get_seed_from_checkpoint": get_seed_from_checkpoint,
            "guess_load_checkpoint": xtuner.model.utils.guess_load_checkpoint}.items()}
        # patch 5: no DeepSpeed shared-memory op is built on a CPU host
        guarded["no shm op"] = torch.cuda.is_available() or sys.modules["deepspeed.comm.torch"].build_shm_op() is None
        return guarded
    """
)


def _run_isolated(body: str, tmp_path, env_extra: dict[str, str] | None = None, timeout: float = 600) -> dict:
    """Run ``body`` (after SNAPSHOT) in a fresh ``python -S`` with this checkout importable; returns its JSON."""
    prelude = f"import sys\nsys.path[:0] = {[str(ROOT), *isolated_python_path()]!r}\n"
    check = textwrap.dedent(
        f"""
        import videoccam
        assert videoccam.__file__.startswith({str(ROOT / "videoccam")!r}), videoccam.__file__
        """
    )
    env = {**isolated_env(tmp_path), **(env_extra or {})}
    result = subprocess.run([sys.executable, "-S", "-c", prelude + SNAPSHOT + check + textwrap.dedent(body)],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)  # fmt: skip
    assert result.returncode == 0, f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_every_library_module_imports_without_changing_global_state(tmp_path):
    """Import each module of videoccam/ in turn; torch, the environment and sys.modules stay as they were."""
    assert "videoccam.model.videoccam_model" in LIBRARY_MODULES and "videoccam.dataset.dataset" in LIBRARY_MODULES
    body = f"""
    import importlib, json
    before = snapshot()
    assert not before["import hook"], "the .pth hook ran: the child is not isolated"
    changed = {{}}
    for name in {LIBRARY_MODULES!r}:
        importlib.import_module(name)
        now = snapshot()
        diff = {{k: (before[k], v) for k, v in now.items() if v != before[k]}}
        if diff:
            changed[name] = {{k: [str(a), str(b)] for k, (a, b) in diff.items()}}
            before = now
    print(json.dumps(changed))
    """
    changed = _run_isolated(body, tmp_path)
    assert changed == {}, f"importing these modules changed global state: {changed}"


def test_install_applies_the_patches_once(tmp_path):
    """Patches 2-3 at once; patch 4 on the first import of mmengine's runners and xtuner's loaders. torch.load and
    the environment stay as they were (checkpoints load weights-only: no TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD)."""
    body = """
    import json
    from videoccam import xtuner_compat
    before = snapshot()
    xtuner_compat.install()
    after = snapshot()
    xtuner_compat.install()
    again = snapshot()
    guarded = loaders_guarded()
    print(json.dumps({"before": before, "after": after, "again": again, "cuda": torch.cuda.is_available(),
                      "guarded": guarded, "imported": snapshot()}))
    """
    out = _run_isolated(body, tmp_path)
    before, after = out["before"], out["after"]
    assert before["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] is None
    assert after["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] is None and after["torch.load"] == before["torch.load"]
    assert after["torch.cpu.is_bf16_supported"]
    assert (after["torch.cuda.set_device"] != before["torch.cuda.set_device"]) == (not out["cuda"])
    assert out["again"] == after  # idempotent
    assert after["post-import patcher"] and all(out["guarded"].values()), out["guarded"]
    assert not out["imported"]["post-import patcher"]  # it steps aside once every loader is patched


def test_install_after_the_loaders_are_imported_patches_them_in_place(tmp_path):
    body = """
    import json
    import mmengine.runner, xtuner.model.utils, xtuner.tools.utils, deepspeed.comm.torch
    from videoccam import xtuner_compat
    xtuner_compat.install()
    print(json.dumps({"guarded": loaders_guarded(), "after": snapshot()}))
    """
    out = _run_isolated(body, tmp_path)
    assert all(out["guarded"].values()), out["guarded"]
    assert not out["after"]["post-import patcher"] and out["after"]["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] is None


def test_pth_hook_installs_on_the_first_import_of_xtuner(tmp_path):
    """What the stock `xtuner` CLI's subprocesses get: nothing until xtuner is imported, then every patch."""
    body = """
    import json
    from videoccam import xtuner_compat
    xtuner_compat.register_import_hook()  # what the .pth line runs at start-up
    registered = snapshot()
    import xtuner
    after = snapshot()
    print(json.dumps({"registered": registered, "after": after, "guarded": loaders_guarded()}))
    """
    out = _run_isolated(body, tmp_path)
    assert out["registered"]["import hook"] and out["registered"]["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] is None
    assert not out["after"]["import hook"]  # it steps aside after installing
    assert out["after"]["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] is None
    assert out["after"]["torch.cpu.is_bf16_supported"] and all(out["guarded"].values()), out


@pytest.mark.parametrize("argv0, quiet", [("/venv/lib/python3.11/site-packages/xtuner/tools/train.py", True),
                                          ("/venv/bin/xtuner", True), ("my_training_script.py", False)])
def test_pth_hook_silences_known_notices_only_in_the_stock_cli(tmp_path, argv0, quiet):
    """`xtuner train` (the command and the script it starts) is an entry point of ours: videoccam/quiet.py applies,
    from start-up on (the CLI imports peft before xtuner). A user's program that imports xtuner keeps every line."""
    body = f"""
    import json
    sys.argv = [{argv0!r}]
    from videoccam import xtuner_compat
    xtuner_compat.register_import_hook()  # what the .pth line runs at start-up
    at_start = quieted()
    import mmengine.logging.logger, xtuner
    print(json.dumps({{"at_start": at_start, "after": quieted()}}))
    """
    out = _run_isolated(body, tmp_path)
    assert out["at_start"]["peft warning filter"] == quiet and out["at_start"]["DeepSpeed logger filter"] == quiet
    assert out["after"] == {"peft warning filter": quiet, "DeepSpeed logger filter": quiet, "MMLogger quiet": quiet}


@pytest.mark.skipif(__import__("importlib").util.find_spec("torchvision") is not None,
                    reason="the stub is only used where torchvision is missing")  # fmt: skip
def test_make_xtuner_importable_only_stubs_the_torchvision_module(tmp_path):
    body = """
    import json
    from videoccam.xtuner_compat import make_xtuner_importable
    before = snapshot()
    make_xtuner_importable()
    import xtuner.dataset  # fails without the stub: xtuner.dataset imports torchvision for InternVL
    from xtuner.dataset.internvl_dataset import InternVL_V1_5_Dataset
    try:
        InternVL_V1_5_Dataset()
        message = None
    except ImportError as error:
        message = str(error)
    print(json.dumps({"before": before, "after": snapshot(), "message": message}))
    """
    out = _run_isolated(body, tmp_path)
    changed = {k for k in out["after"] if out["after"][k] != out["before"][k]}
    assert changed == {"xtuner.dataset.internvl_dataset stub"}
    assert "needs torchvision" in out["message"]


@pytest.mark.slow
def test_deepspeed_starts_on_cpu_although_a_killed_build_left_its_lock(tmp_path):
    """A process killed while DeepSpeed JIT-built its CPU shared-memory op leaves ``deepspeed_shm_comm/lock`` in the
    torch extensions folder; unpatched, every later ``deepspeed.init_distributed`` waits for it forever. With the
    patches installed DeepSpeed builds nothing: it starts, and an all-reduce over gloo gives the right sum."""
    extensions = tmp_path / "torch_extensions"
    (extensions / "deepspeed_shm_comm").mkdir(parents=True)
    (extensions / "deepspeed_shm_comm" / "lock").touch()
    body = """
    import json, os
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(__import__("socket").create_server(("127.0.0.1", 0))
                                                             .getsockname()[1]), RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
    from videoccam import xtuner_compat
    xtuner_compat.install()
    import deepspeed, deepspeed.comm as ds_comm
    deepspeed.init_distributed("gloo")
    x = torch.tensor([2.0, 3.0])
    ds_comm.all_reduce(x)
    print(json.dumps({"sum": x.tolist(), "built": os.listdir(os.environ["TORCH_EXTENSIONS_DIR"] + "/deepspeed_shm_comm")}))
    """
    env_extra = {"TORCH_EXTENSIONS_DIR": str(extensions)}
    out = _run_isolated(body, tmp_path, env_extra=env_extra, timeout=180)
    assert out == {"sum": [2.0, 3.0], "built": ["lock"]}
