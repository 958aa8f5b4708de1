"""videoccam/cli.py: the argument helpers every tool shares (model naming, dtypes, devices, --cfg-options, chat flags)."""

from __future__ import annotations

import argparse

import pytest
import torch

from videoccam.cli import (
    DTYPE_NAMES,
    add_model_args,
    check_model_args,
    generation_settings,
    parse_cfg_options,
    parse_frame_counts,
    resolve_device,
    resolve_dtype,
)
from videoccam.inference.chat import GenerationSettings


def test_generation_settings_from_flags():
    def ns(**kw):
        base = {"do_sample": False, "temperature": None, "max_new_tokens": 8, "top_p": None}
        return argparse.Namespace(**{**base, **kw})

    assert generation_settings(ns()).generate_kwargs() == {"max_new_tokens": 8, "do_sample": False}
    assert generation_settings(ns(temperature=0.7)).generate_kwargs() == {
        "max_new_tokens": 8, "do_sample": True, "temperature": 0.7}
    assert generation_settings(ns(do_sample=True, temperature=0)).do_sample is False
    with pytest.raises(ValueError, match="temperature"):
        generation_settings(ns(temperature=-1))
    with pytest.raises(ValueError, match="max_new_tokens"):
        GenerationSettings(max_new_tokens=0)


def test_frame_counts():
    assert parse_frame_counts("16, 32,16") == [16, 32]
    for bad in ("", "16,x", "0", "-4"):
        with pytest.raises(argparse.ArgumentTypeError, match="positive integers"):
            parse_frame_counts(bad)


def test_dtype_names_and_devices():
    assert resolve_dtype(None) is None and resolve_dtype("auto") is None
    assert {resolve_dtype(name) for name in DTYPE_NAMES} == {torch.float32, torch.bfloat16, torch.float16}
    assert resolve_dtype("bf16") is torch.bfloat16
    with pytest.raises(ValueError, match="unknown dtype 'int3'"):
        resolve_dtype("int3")
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")


def test_cfg_options_are_parsed_like_xtuner_train():
    assert parse_cfg_options(None) is None and parse_cfg_options([]) is None
    assert parse_cfg_options(["a.b=1", "c=[1,2]", "d=None", "e=x"]) == {"a.b": 1, "c": [1, 2], "d": None, "e": "x"}
    with pytest.raises(ValueError, match="KEY=VALUE, got 'oops'"):
        parse_cfg_options(["a=1", "oops"])


def test_model_flags_follow_one_rule(tmp_path):
    parser = argparse.ArgumentParser()
    add_model_args(parser, device="auto", dtype="auto")
    assert parser.parse_args([]).device == "auto" and parser.parse_args([]).dtype == "auto"
    config, checkpoint = tmp_path / "c.py", tmp_path / "k.pth"
    config.write_text("")
    checkpoint.write_bytes(b"")
    check_model_args(parser.parse_args(["--config", str(config), "--checkpoint", str(checkpoint)]))
    check_model_args(parser.parse_args(["--model", str(tmp_path)]))
    for argv, error, match in (
        ([], ValueError, "no model"),
        (["--config", str(config)], ValueError, "no model"),
        (["--model", str(tmp_path), "--config", str(config)], ValueError, "not both"),
        (["--model", str(tmp_path / "nowhere")], FileNotFoundError, "nowhere.*does not exist"),
    ):
        with pytest.raises(error, match=match):
            check_model_args(parser.parse_args(argv))
