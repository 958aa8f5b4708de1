"""Reading this project's training configs: load one, and find what it trains with.

A config names the prompt template, tokenizer and image processor either at the top level (``prompt_template``,
``tokenizer``, ``image_processor``) or inside ``train_dataloader.dataset``; the lookups here accept both, so the
exporter, the loaders and the tools read any config of ``configs/`` (or a work dir's dumped copy) the same way.

Configs import ``xtuner.dataset``; :func:`load_config` makes that importable on CPU-only installs
(:func:`videoccam.xtuner_compat.make_xtuner_importable`) and changes nothing else.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from mmengine.config import Config, ConfigDict
from xtuner.registry import BUILDER
from xtuner.utils import PROMPT_TEMPLATE

from videoccam.xtuner_compat import make_xtuner_importable

__all__ = [
    "build_from_cfg",
    "build_image_processor",
    "build_tokenizer",
    "load_config",
    "resolve_template",
    "template_from_cfg",
]


def load_config(path: str | os.PathLike, cfg_options: Mapping[str, Any] | None = None) -> Config:
    """``mmengine.Config.fromfile`` with ``--cfg-options`` (``{"a.b": value}``) merged.

    Raises:
        FileNotFoundError: if ``path`` is not a file.
    """
    make_xtuner_importable()  # the configs import xtuner.dataset (samplers), which imports torchvision
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config not found: {path}")
    cfg = Config.fromfile(str(path))
    if cfg_options:
        cfg.merge_from_dict(dict(cfg_options))
    return cfg


def build_from_cfg(node: Any) -> Any:
    """Build a builder dict (``dict(type=..., ...)``) with xtuner's registry; anything else is returned as is."""
    return BUILDER.build(node) if isinstance(node, (dict, Config, ConfigDict)) else node


def _cfg_lookup(cfg: Any, *paths: str) -> Any:
    """The first of the dotted ``paths`` present in ``cfg`` (None if none is)."""
    for path in paths:
        node = cfg
        for part in path.split("."):
            if not isinstance(node, (dict, Config, ConfigDict)) or part not in node:
                node = None
                break
            node = node[part]
        if node is not None:
            return node
    return None


def resolve_template(template: Any) -> Mapping[str, Any]:
    """An xtuner prompt template from the template itself, its name in ``xtuner.utils.PROMPT_TEMPLATE`` or its
    import path (``"xtuner.utils.PROMPT_TEMPLATE.qwen_chat"``, as mmengine dumps configs).

    Raises:
        ValueError: for an unknown name or a value that is neither a name nor a mapping.
    """
    if isinstance(template, str):
        if template in PROMPT_TEMPLATE:
            return PROMPT_TEMPLATE[template]
        # a config dumped by mmengine (a work dir's copy) stores it as "xtuner.utils.PROMPT_TEMPLATE.qwen_chat"
        from mmengine.utils.misc import get_object_from_string

        found = get_object_from_string(template) if "." in template else None
        if not isinstance(found, Mapping):
            raise ValueError(
                f"unknown prompt template {template!r}; give a template, its import path, or one of "
                f"{', '.join(sorted(PROMPT_TEMPLATE))}"
            )
        return found
    if isinstance(template, Mapping):
        return template
    raise ValueError(f"a prompt template must be a name or a mapping (PROMPT_TEMPLATE.x), got {template!r}")


def template_from_cfg(cfg: Any) -> Mapping[str, Any]:
    """The prompt template a config trains with (``prompt_template`` or the train dataset's ``template``)."""
    template = _cfg_lookup(cfg, "prompt_template", "train_dataloader.dataset.template")
    if template is None:
        raise ValueError(
            "the config has neither `prompt_template` nor `train_dataloader.dataset.template`; the exporter needs "
            "the training prompt template to write a matching chat template"
        )
    return resolve_template(template)


def _build_from_cfg(cfg: Any, what: str) -> Any:
    node = _cfg_lookup(cfg, what, f"train_dataloader.dataset.{what}")
    if node is None:
        raise ValueError(f"the config has neither `{what}` nor `train_dataloader.dataset.{what}`")
    return build_from_cfg(node)


def build_tokenizer(cfg: Any) -> Any:
    """The config's tokenizer (``tokenizer`` or ``train_dataloader.dataset.tokenizer``), built."""
    return _build_from_cfg(cfg, "tokenizer")


def build_image_processor(cfg: Any) -> Any:
    """The config's image processor (``image_processor`` or the train dataset's), built."""
    return _build_from_cfg(cfg, "image_processor")
