"""Tests of videoccam/evaluation/backend.py (the real-model end-to-end test is in tests/tools/test_eval.py)."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from videoccam.evaluation.backend import (
    HFVideoCCAMBackend,
    ScriptedBackend,
    ScriptedMedia,
    VideoQABackend,
    build_scripted_backend,
    hash_reply,
    load_backend,
    resolve_device_dtype,
)
from videoccam.evaluation.scoring import parse_option_letter


class FakeProcessor:
    def __call__(self, images, return_tensors):
        assert return_tensors == "pt"
        return {"pixel_values": torch.stack([torch.full((3, 8, 8), float(im.getpixel((0, 0))[0])) for im in images])}


class FakeModel(torch.nn.Module):
    """Records the calls of the exported model's API that the backend uses."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
        self.calls: list = []

    def encode_media(self, pixel_values, num_frames):
        self.calls.append(("encode_media", tuple(pixel_values.shape), pixel_values.dtype, list(num_frames)))
        return pixel_values.mean(dim=(1, 2, 3)).sum().reshape(1, 1, 1).expand(1, 4, 2)  # [1, q, d]

    def chat(self, messages, images, tokenizer, image_processor, max_new_tokens, do_sample, media_embeds):
        self.calls.append(("chat", messages, images, max_new_tokens, do_sample, media_embeds))
        return [f"A{int(m[0, 0])}" for m in media_embeds]


def _frames(value: int, n: int) -> list[Image.Image]:
    return [Image.new("RGB", (8, 8), (value, 0, 0)) for _ in range(n)]


def test_hf_backend_wiring() -> None:
    model = FakeModel()
    backend = HFVideoCCAMBackend(model, tokenizer="tok", image_processor=FakeProcessor())
    assert isinstance(backend, VideoQABackend)
    f1, f2 = backend.encode(_frames(1, 3)), backend.encode(_frames(2, 5))
    assert model.calls[0] == ("encode_media", (3, 3, 8, 8), torch.float64, [3])
    assert model.calls[1][1:] == ((5, 3, 8, 8), torch.float64, [5])
    out = backend.answer(["<video>\nq1", "<video>\nq2"], [f1, f2], max_new_tokens=7)
    assert out == ["A3", "A10"]
    _, messages, images, budget, do_sample, embeds = model.calls[2]
    assert messages == [[{"role": "user", "content": "<video>\nq1"}], [{"role": "user", "content": "<video>\nq2"}]]
    assert images is None and budget == 7 and do_sample is False and embeds[0] is f1 and embeds[1] is f2
    with pytest.raises(ValueError, match="2 prompts but 1 media"):
        backend.answer(["a", "b"], [f1])


def test_scripted_backend_list_and_function() -> None:
    b = ScriptedBackend(["x", "y"])
    m = b.encode(_frames(1, 2))
    assert isinstance(m, ScriptedMedia) and m.num_frames == 2 and isinstance(b, VideoQABackend)
    assert b.answer(["p1", "p2"], [m, m]) == ["x", "y"]
    with pytest.raises(ValueError, match="ran out of replies"):
        b.answer(["p3"], [m])
    with pytest.raises(ValueError, match="must come from ScriptedBackend.encode"):
        b.answer(["p"], [object()])
    assert ScriptedBackend(str.upper).answer(["ab"], [m]) == ["AB"]
    assert build_scripted_backend("const:(C)").answer(["q"], [m]) == ["(C)"]
    with pytest.raises(ValueError, match="unknown scripted backend"):
        build_scripted_backend("oracle")


def test_hash_reply_is_deterministic_and_mixed() -> None:
    replies = [hash_reply(f"prompt {i}") for i in range(200)]
    assert replies == [hash_reply(f"prompt {i}") for i in range(200)]
    parsed = [parse_option_letter(r, 4) for r in replies]
    assert set(parsed) == {"A", "B", "C", "D", None}


def test_load_backend_argument_errors(tmp_path) -> None:
    with pytest.raises(ValueError, match="no model"):
        load_backend()
    with pytest.raises(ValueError, match="not both"):
        load_backend("m", "c", "k")
    with pytest.raises(ValueError, match="no model"):
        load_backend(config="c.py")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_backend(str(tmp_path / "missing"))


def test_resolve_device_dtype() -> None:
    assert resolve_device_dtype("cpu", "auto") == ("cpu", torch.float32)
    assert resolve_device_dtype("cpu", "bf16") == ("cpu", torch.bfloat16)
    with pytest.raises(ValueError, match="unknown dtype"):
        resolve_device_dtype("cpu", "int3")

