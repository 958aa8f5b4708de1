"""videoccam/inference/web_demo.py without a browser: the offline middleware, the status line, the handlers on a
fake model (the page in headless Chromium: tests/tools/test_web_demo.py)."""

from __future__ import annotations

import argparse

import torch
from PIL import Image

from videoccam.inference.chat import Media
from videoccam.inference.web_demo import DemoBackend, DemoHandlers, OfflinePageMiddleware, media_status


def test_offline_middleware_drops_external_tags_only():
    import asyncio

    page = (b'<html><head><link rel="preconnect" href="https://fonts.googleapis.com" />'
            b'<script src="https://cdnjs.cloudflare.com/x.js" async></script>'
            b'<script type="module" src="./assets/index.js"></script></head><body>hi</body></html>')

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/html; charset=utf-8"),
                                (b"content-length", str(len(page)).encode())]})
        await send({"type": "http.response.body", "body": page[:40], "more_body": True})
        await send({"type": "http.response.body", "body": page[40:]})

    sent = []

    async def send(message):
        sent.append(message)

    asyncio.run(OfflinePageMiddleware(app)({"type": "http"}, None, send))
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert b"https://" not in body and b'src="./assets/index.js"' in body and b"<body>hi</body>" in body
    assert dict(sent[0]["headers"])[b"content-length"] == str(len(body)).encode()


class _FakeModel:
    """What the handlers reach through ChatSession: encode_media and chat (replies "A red square.")."""

    class config:  # noqa: N801 - attribute access like a transformers config
        projector_config = argparse.Namespace(num_queries=8)

    def encode_media(self, pixel_values, num_frames):
        return torch.zeros(len(num_frames), 2, 2)

    def chat(self, messages, images, tokenizer, image_processor, media_embeds=None, streamer=None, **kwargs):
        if streamer is not None:
            streamer.put(torch.zeros(1, 0, dtype=torch.long))
            for ch in "A red square.":
                streamer.put(torch.tensor([ord(ch)]))
            streamer.end()
        return ["A red square."]


class _Tokenizer:
    def decode(self, ids, skip_special_tokens=False, **_):
        return "".join(chr(i) for i in ids)


class _Processor:
    def __call__(self, images, return_tensors="pt"):
        return {"pixel_values": torch.zeros(len(images), 3, 2, 2)}


class _Gradio:
    """The two gradio calls the handlers make."""

    warnings: list[str] = []

    @staticmethod
    def update(**kwargs):
        return {"update": kwargs}

    @classmethod
    def Warning(cls, message):  # noqa: N802 - gradio's name
        cls.warnings.append(message)


def test_status_line_and_slider_cap():
    assert "No media" in media_status(None)
    media = Media("video", [Image.new("RGB", (4, 4))] * 3, "/data/clip.mp4")
    assert media_status(media, "fps") == "Loaded **clip.mp4**: video, 3 frame(s), fps sampling."
    assert DemoBackend(_FakeModel(), _Tokenizer(), _Processor()).max_frames == 8


def test_handlers_upload_send_and_clear(tmp_path):
    image = tmp_path / "a.png"
    Image.new("RGB", (8, 8), (200, 30, 30)).save(image)
    handlers = DemoHandlers(DemoBackend(_FakeModel(), _Tokenizer(), _Processor()), _Gradio)
    chat, state, status, frames = handlers.on_upload(str(image), 4, "uniform", 1.0, None)
    assert chat == [] and "a.png" in status and len(frames) == 1 and state["epoch"] == 1
    steps = list(handlers.on_send("What is it?", [], state, str(image), 4, "uniform", 1.0, 16, 0.7, False))
    shown = steps[-1][0]
    assert shown[0] == {"role": "user", "content": "What is it?"}
    assert shown[-1] == {"role": "assistant", "content": "A red square."}
    assert state["session"].messages[0]["content"] == "<image>\nWhat is it?"
    # a placeholder in a later turn is refused with a toast, the conversation unchanged
    steps = list(handlers.on_send("<video>\nAnd?", shown, state, str(image), 4, "uniform", 1.0, 16, 0.7, False))
    assert steps[-1][2] == "<video>\nAnd?" and "placeholder" in _Gradio.warnings[-1]
    assert handlers.on_clear(state) == ([], state, "") and state["session"].messages == []
    # an empty message changes nothing
    assert list(handlers.on_send("  ", [], state, None, 4, "uniform", 1.0, 16, 0.7, False)) == \
        [([], state, "", {"update": {}})]
