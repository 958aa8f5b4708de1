"""A module that came with its own code (a released projector, loaded with ``trust_remote_code``): where that
code lives, and copying it beside exported weights so the export loads the same way.

The project's own projector (:class:`~videoccam.model.hf.ccam_projector.CCAMProjector`) is exported with the
files of :mod:`videoccam.model.hf`; any other projector class is exported with the source files of its own
module and its config's module (and their relative imports), as ``save_pretrained`` does for a remote-code model
whose class is registered for an auto class, which transformers 4.48 does not do for classes it loaded itself.
"""

from __future__ import annotations

import filecmp
import json
import shutil
import sys
from pathlib import Path

from torch import nn

from videoccam.model.hf.ccam_projector import CCAMProjector

__all__ = ["code_files", "copy_code", "has_own_code", "own_auto_map", "write_auto_map"]


def has_own_code(module: nn.Module) -> bool:
    """True for a projector that is not the project's :class:`CCAMProjector` (its code must travel with it)."""
    return not isinstance(module, CCAMProjector)


def _module_name(cls: type) -> str:
    return cls.__module__.rsplit(".", 1)[-1]


def own_auto_map(module: nn.Module) -> dict[str, str]:
    """``{"AutoConfig": "<file>.<ConfigClass>", "AutoModel": "<file>.<ModelClass>"}`` of a module with a config."""
    config = module.config
    return {
        "AutoConfig": f"{_module_name(type(config))}.{type(config).__name__}",
        "AutoModel": f"{_module_name(type(module))}.{type(module).__name__}",
    }


def code_files(module: nn.Module) -> list[Path]:
    """The source files that define ``module``'s class and its config's class, with their relative imports."""
    from transformers.dynamic_module_utils import get_relative_import_files

    files: list[Path] = []
    for cls in (type(module), type(module.config)):
        source = getattr(sys.modules.get(cls.__module__), "__file__", None)
        if source is None:
            raise ValueError(f"the source file of {cls.__module__}.{cls.__name__} is unknown; cannot export its code")
        for path in [Path(source), *map(Path, get_relative_import_files(source))]:
            if path not in files:
                files.append(path)
    return files


def copy_code(module: nn.Module, folder: str | Path) -> list[Path]:
    """Copy :func:`code_files` into ``folder``.

    Raises:
        ValueError: if a file of the same name with other content is already there (e.g. the project's own
            ``modeling_videoccam.py``): the two could not both be imported from the folder.
    """
    folder = Path(folder)
    written = []
    for source in code_files(module):
        target = folder / source.name
        if target.exists() and not filecmp.cmp(source, target, shallow=False):
            raise ValueError(
                f"{type(module).__name__}'s code file {source.name} would replace a different {target}; the "
                "projector's own code and the model code of this export cannot share a folder"
            )
        shutil.copy(source, target)
        written.append(target)
    return written


def write_auto_map(config_json: str | Path, auto_map: dict[str, str]) -> None:
    """Set ``auto_map`` in a saved ``config.json`` (replacing one that may point into a hub repository)."""
    path = Path(config_json)
    data = json.loads(path.read_text())
    data["auto_map"] = dict(auto_map)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
