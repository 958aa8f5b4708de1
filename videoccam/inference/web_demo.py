"""The Gradio web demo: upload a video, image or GIF and chat with a Video-CCAM model about it.

``tools/web_demo.py`` is its command line (``bash tools/install.sh demo`` installs gradio, the ``demo`` extra).
The page has a file upload (video file, image or GIF), frame-sampling controls (number of frames, uniform or
fps sampling), generation controls (max new tokens, temperature, sampling on/off), a multi-turn chat and a
clear button. The media is decoded and encoded once per conversation, with the sampling settings in force at
the first question; a new upload or "Clear" starts a new conversation.

Offline by design: telemetry and gradio's version check are off (``GRADIO_ANALYTICS_ENABLED=False``), the
theme uses the fonts bundled in the gradio wheel (no Google Fonts), the frontend is served from the wheel,
and ``--share`` (a public tunnel through gradio.live) is off unless asked for. The server listens on
127.0.0.1 unless ``--host`` says otherwise.
"""

from __future__ import annotations

import argparse
import html
import os
import re
from typing import Any

from videoccam.dataset.video_io import MediaLoadError
from videoccam.inference.chat import (
    ChatSession,
    GenerationSettings,
    Media,
    load_media,
    media_error_message,
    strip_placeholders,
)

__all__ = ["DemoBackend", "DemoHandlers", "OfflinePageMiddleware", "build_demo", "import_gradio", "media_status"]

UPLOAD_TYPES = ["video", "image", ".gif", ".mp4", ".mkv", ".webm", ".avi", ".mov"]
GRADIO_INSTALL_HINT = (
    "the web demo needs gradio; install it with `bash tools/install.sh demo` or `pip install -e .[demo]`"
)


def disable_telemetry() -> None:
    """Keep gradio and the Hugging Face hub from contacting their servers (set before importing gradio)."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def import_gradio() -> Any:
    """Import gradio with telemetry off.

    Raises:
        ImportError: With the install command, when gradio is missing.
    """
    disable_telemetry()
    try:
        import gradio as gr
    except ImportError as e:
        raise ImportError(GRADIO_INSTALL_HINT) from e
    return gr


class DemoBackend:
    """The model shared by all browser sessions, and the handlers the page calls.

    Each browser session keeps its own :class:`ChatSession` in a ``gr.State``; the page's queue lets one reply be
    generated at a time, which is what a single CPU or GPU can serve anyway.

    Args:
        model, tokenizer, image_processor: As returned by :func:`videoccam.inference.load.load_model`.
    """

    def __init__(self, model: Any, tokenizer: Any, image_processor: Any) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        projector_config = getattr(getattr(model, "config", None), "projector_config", None)
        # The projector maps at most num_queries frames (design.md 2.1: T <= N); cap the slider there.
        self.max_frames = int(getattr(projector_config, "num_queries", 0) or 0) or 256

    def new_session(self) -> ChatSession:
        return ChatSession(self.model, self.tokenizer, self.image_processor)

    @staticmethod
    def media_key(path: str | None, num_frames: int, sampling: str, fps: float) -> tuple:
        return (path, int(num_frames), sampling, float(fps) if sampling == "fps" else None)

    def load(self, path: str, num_frames: int, sampling: str, fps: float) -> Media:
        """Decode the uploaded file with the page's sampling settings.

        Raises:
            ValueError: With a user-facing message when the file cannot be read or the settings are invalid.
        """
        try:
            return load_media(path, num_frames=int(num_frames), sampling=sampling,
                              target_fps=float(fps) if sampling == "fps" else None,
                              max_frames=int(num_frames) if sampling == "fps" else None)
        except MediaLoadError as error:
            raise ValueError(media_error_message(error)) from error


class OfflinePageMiddleware:
    """ASGI middleware that removes the tags of gradio's HTML page which reach other hosts.

    gradio 5's ``index.html`` loads ``iframeResizer.contentWindow.min.js`` from cdnjs.cloudflare.com (used only
    when the page is embedded in an iframe, e.g. on Hugging Face Spaces) and preconnects to Google Fonts. Both
    are external requests from the user's browser; this middleware drops ``<script src="http(s)://...">`` and
    ``<link href="http(s)://...">`` tags from HTML responses. Everything else (the frontend bundle, fonts,
    the queue's event stream) is served by the local server and passes through untouched.
    """

    _EXTERNAL_TAG = re.compile(
        rb"<script\b[^>]*\bsrc=[\"']https?://[^>]*>\s*</script>|<link\b[^>]*\bhref=[\"']https?://[^>]*>",
        re.IGNORECASE,
    )

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start: dict | None = None
        chunks: list[bytes] = []

        async def send_filtered(message: dict) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                headers = {key.lower(): value for key, value in message.get("headers", [])}
                if headers.get(b"content-type", b"").startswith(b"text/html") and b"content-encoding" not in headers:
                    start = message  # hold it until the body is complete and rewritten
                    return
            elif message["type"] == "http.response.body" and start is not None:
                chunks.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                body = self._EXTERNAL_TAG.sub(b"", b"".join(chunks))
                headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
                headers.append((b"content-length", str(len(body)).encode()))
                await send({**start, "headers": headers})
                await send({"type": "http.response.body", "body": body, "more_body": False})
                return
            await send(message)

        await self.app(scope, receive, send_filtered)


def media_status(media: Media | None, sampling: str = "uniform") -> str:
    """The text under the upload box."""
    if media is None:
        return "No media: the chat is text-only. Upload a video, image or GIF to talk about it."
    how = "" if media.kind == "image" else f", {sampling} sampling"
    return f"Loaded **{os.path.basename(media.source)}**: {media.kind}, {len(media.frames)} frame(s){how}."


def _theme(gr: Any) -> Any:
    """The default theme with the fonts bundled in the gradio wheel (its Google font would be fetched online)."""
    from gradio.themes.utils.fonts import LocalFont

    return gr.themes.Default(
        font=[LocalFont("IBM Plex Sans"), "ui-sans-serif", "system-ui", "sans-serif"],
        font_mono=[LocalFont("IBM Plex Mono"), "ui-monospace", "monospace"],
    )


class DemoHandlers:
    """The page's event handlers. Each browser session's ``gr.State`` holds ``{"session": ChatSession, "key": the
    (file, sampling) its media was decoded with, "epoch": bumped by Clear and by a new upload}``.

    Args:
        backend: The shared model.
        gr: The gradio module (:func:`import_gradio`).
    """

    def __init__(self, backend: DemoBackend, gr: Any) -> None:
        self.backend = backend
        self.gr = gr

    def warn(self, error: Exception) -> None:
        # A toast that leaves the page usable (gr.Error would mark every output as failed). Toasts render
        # HTML: escape, or "<image>/<video>" in a message would vanish as unknown tags.
        self.gr.Warning(html.escape(str(error)))

    def ensure(self, state: dict | None) -> dict:
        if state is None:
            # epoch: bumped by Clear and by a new upload, so a reply still streaming stops updating the chat
            state = {"session": self.backend.new_session(), "key": None, "epoch": 0}
        return state

    def on_upload(self, path, num_frames, sampling, fps, state):
        """A new file starts a new conversation; decode it now to show the frames (or the error)."""
        backend = self.backend
        state = self.ensure(state)
        session: ChatSession = state["session"]
        session.set_media(None)
        state["key"] = None
        state["epoch"] += 1
        if not path:
            return [], state, media_status(None), []
        try:
            media = backend.load(path, num_frames, sampling, fps)
        except ValueError as error:
            return [], state, f"**Cannot use this file:** {error}", []
        session.set_media(media)
        state["key"] = backend.media_key(path, num_frames, sampling, fps)
        return [], state, media_status(media, sampling), media.frames

    def on_send(self, message, history, state, path, num_frames, sampling, fps, max_new_tokens, temperature,
                do_sample):  # fmt: skip
        """Stream the reply to ``message`` into the chat (the first question decodes the media first)."""
        gr, backend, warn = self.gr, self.backend, self.warn
        state = self.ensure(state)
        session: ChatSession = state["session"]
        history = list(history or [])
        message = (message or "").strip()
        if not message:
            yield history, state, "", gr.update()
            return
        frames_update = gr.update()
        key = backend.media_key(path, num_frames, sampling, fps)
        if not session.messages and key != state["key"]:
            # First question of a conversation: (re)decode with the current sampling settings.
            try:
                media = backend.load(path, num_frames, sampling, fps) if path else None
            except ValueError as error:
                warn(error)
                yield history, state, message, gr.update()
                return
            session.set_media(media)
            state["key"] = key
            frames_update = media.frames if media else []
        try:
            settings = GenerationSettings(max_new_tokens=int(max_new_tokens), do_sample=bool(do_sample),
                                          temperature=float(temperature) if float(temperature) > 0 else 1.0)
            session.user_content(message)  # validate before showing the message
        except ValueError as error:
            warn(error)
            yield history, state, message, frames_update
            return
        shown = [*history, {"role": "user", "content": strip_placeholders(message) or message},
                 {"role": "assistant", "content": ""}]
        yield shown, state, "", frames_update
        epoch = state["epoch"]
        try:
            stream = session.stream(message, settings)
            try:
                for partial in stream:
                    if state["epoch"] != epoch:  # cleared or new media meanwhile: drop this reply
                        return
                    shown[-1] = {"role": "assistant", "content": partial}
                    yield shown, state, "", gr.update()
            finally:
                stream.close()  # an abandoned reply is not added to the conversation
        except ValueError as error:  # e.g. more frames than the projector has queries
            warn(error)
            yield history, state, message, gr.update()
            return
        if not shown[-1]["content"]:
            shown[-1] = {"role": "assistant", "content": "(empty reply)"}
            yield shown, state, "", gr.update()

    def on_clear(self, state):
        state = self.ensure(state)
        state["session"].reset()  # keeps the loaded media
        state["epoch"] += 1
        return [], state, ""


def build_demo(backend: DemoBackend, args: argparse.Namespace) -> Any:
    """The Gradio page (a ``gr.Blocks``), with ``args`` giving the controls' initial values."""
    gr = import_gradio()
    handlers = DemoHandlers(backend, gr)
    max_frames = backend.max_frames

    with gr.Blocks(title="Video-CCAM chat", theme=_theme(gr), analytics_enabled=False) as demo:
        gr.Markdown("## Video-CCAM chat\nUpload a video, an image or a GIF, then ask questions about it.")
        state = gr.State(None)
        with gr.Row():
            with gr.Column(scale=2):
                media_file = gr.File(label="Video, image or GIF", file_types=UPLOAD_TYPES, type="filepath",
                                     elem_id="media-upload")
                status = gr.Markdown(media_status(None), elem_id="media-status")
                frames = gr.Gallery(label="Sampled frames", columns=8, height=160, object_fit="contain",
                                    allow_preview=False, elem_id="frames")
                with gr.Accordion("Frame sampling", open=True):
                    num_frames = gr.Slider(1, max_frames, value=min(args.num_frames, max_frames), step=1,
                                           label="Frames (uniform) / at most (fps)", elem_id="num-frames")
                    sampling = gr.Radio(["uniform", "fps"], value=args.sampling, label="Sampling",
                                        elem_id="sampling")
                    fps = gr.Slider(0.1, 10.0, value=args.fps, step=0.1, label="Frames per second (fps sampling)",
                                    elem_id="fps")
                with gr.Accordion("Generation", open=False):
                    max_new_tokens = gr.Slider(1, 2048, value=args.max_new_tokens, step=1, label="Max new tokens",
                                               elem_id="max-new-tokens")
                    do_sample = gr.Checkbox(value=args.do_sample, label="Sample (off: greedy decoding)",
                                            elem_id="do-sample")
                    temperature = gr.Slider(0.05, 2.0, value=args.temperature, step=0.05,
                                            label="Temperature (when sampling)", elem_id="temperature")
            with gr.Column(scale=3):
                chatbot = gr.Chatbot(type="messages", label="Chat", height=480, elem_id="chatbot",
                                     sanitize_html=True, render_markdown=True)
                with gr.Row():
                    textbox = gr.Textbox(placeholder="Ask about the video or image, then press Enter or Send",
                                         show_label=False, scale=5, elem_id="message", autofocus=True)
                    send = gr.Button("Send", variant="primary", scale=1, elem_id="send-btn")
                clear = gr.Button("Clear conversation", elem_id="clear-btn")

        send_inputs = [textbox, chatbot, state, media_file, num_frames, sampling, fps, max_new_tokens, temperature,
                       do_sample]
        send_outputs = [chatbot, state, textbox, frames]
        # One reply at a time over all sessions (concurrency_id shared by both triggers): one CPU/GPU serves them.
        sending = [
            trigger(handlers.on_send, send_inputs, send_outputs, concurrency_id="generate", concurrency_limit=1)
            for trigger in (send.click, textbox.submit)
        ]
        media_file.change(handlers.on_upload, [media_file, num_frames, sampling, fps, state],
                          [chatbot, state, status, frames], cancels=sending)
        # Clearing (or the chat's own trash icon) also cancels a reply that is still streaming.
        clear.click(handlers.on_clear, [state], [chatbot, state, textbox], cancels=sending)
        chatbot.clear(handlers.on_clear, [state], [chatbot, state, textbox], cancels=sending)
    return demo
