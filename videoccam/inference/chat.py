"""Multi-turn chat with one image or video: the session shared by ``tools/chat.py`` and the web demo.

A :class:`ChatSession` holds a loaded model (the Hugging Face ``VideoCCAMForCausalLM``, its tokenizer and
image processor), the conversation so far as chat messages, and at most one media item. The media item is
encoded once (``model.encode_media``) and its embeddings are passed to every turn through
``model.chat(..., media_embeds=...)``, so a long conversation about a video decodes and encodes it once.

Conventions (design.md section 1):

* The media placeholder (``<video>`` or ``<image>``) lives in the first user turn only; when that turn does
  not contain one, ``"<video>\\n"`` / ``"<image>\\n"`` is put in front of it.
* Later turns must not contain a placeholder (the model takes one media item per conversation): that is a
  ``ValueError`` naming the turn.
* Loading new media starts a new conversation.

Streaming uses transformers' ``TextIteratorStreamer``: :meth:`ChatSession.stream` runs ``model.chat`` on a
worker thread and yields the text as it is generated.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from PIL import Image

from videoccam.dataset.video_io import IMAGE_EXTENSIONS, MediaLoadError, load_image, load_video
from videoccam.model.hf.constants import IMAGE_TOKEN, MEDIA_TOKENS, VIDEO_TOKEN

__all__ = [
    "ChatSession",
    "GenerationSettings",
    "Media",
    "guess_media_kind",
    "has_placeholder",
    "load_media",
    "media_error_message",
    "strip_placeholders",
]

MediaKind = Literal["image", "video"]


@dataclass
class Media:
    """One image or video of a conversation.

    Attributes:
        kind: ``"image"`` (one frame) or ``"video"`` (a video file, frame folder or GIF).
        frames: The decoded frames, RGB, in temporal order (one frame for an image).
        source: Where the frames came from (a path), for messages; may be empty.
    """

    kind: MediaKind
    frames: list[Image.Image]
    source: str = ""

    @property
    def placeholder(self) -> str:
        """The prompt placeholder that stands for this item: ``<image>`` or ``<video>``."""
        return IMAGE_TOKEN if self.kind == "image" else VIDEO_TOKEN

    def describe(self) -> str:
        """A one-line summary, e.g. ``"video clip.mp4 (16 frames)"``."""
        name = os.path.basename(self.source) if self.source else "(in memory)"
        frames = "1 frame" if len(self.frames) == 1 else f"{len(self.frames)} frames"
        return f"{self.kind} {name} ({frames})"


@dataclass
class GenerationSettings:
    """Decoding options of one reply.

    Attributes:
        max_new_tokens: Most tokens to generate.
        do_sample: Sample instead of greedy decoding.
        temperature: Sampling temperature (used only when sampling).
        top_p: Nucleus sampling threshold (used only when sampling); None keeps the model's default.
    """

    max_new_tokens: int = 512
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.max_new_tokens, bool) or int(self.max_new_tokens) < 1:
            raise ValueError(f"max_new_tokens must be a positive integer, got {self.max_new_tokens!r}")
        self.max_new_tokens = int(self.max_new_tokens)
        if self.do_sample and not float(self.temperature) > 0:
            raise ValueError(f"temperature must be > 0 when sampling, got {self.temperature!r}")
        if self.top_p is not None and not 0 < float(self.top_p) <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p!r}")

    def generate_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``model.chat`` / ``generate`` (sampling knobs only when sampling)."""
        kwargs: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "do_sample": self.do_sample}
        if self.do_sample:
            kwargs["temperature"] = float(self.temperature)
            if self.top_p is not None:
                kwargs["top_p"] = float(self.top_p)
        return kwargs


def guess_media_kind(path: str | os.PathLike) -> MediaKind:
    """``"image"`` for a single image file (by suffix), ``"video"`` for anything else.

    GIFs count as videos (their frames are sampled); so do folders of frames.
    """
    path = Path(path)
    if path.is_dir():
        return "video"
    return "image" if path.suffix.lower() in IMAGE_EXTENSIONS else "video"


def load_media(
    path: str | os.PathLike,
    kind: MediaKind | None = None,
    num_frames: int = 16,
    sampling: Literal["uniform", "fps"] = "uniform",
    target_fps: float | None = None,
    max_frames: int | None = None,
) -> Media:
    """Read an image, or sample the frames of a video / frame folder / GIF.

    Args:
        path: The file or frame folder.
        kind: ``"image"`` or ``"video"``; None guesses from the path (:func:`guess_media_kind`).
        num_frames: Frames to sample (``uniform``), or the cap for ``fps`` when ``max_frames`` is None.
        sampling: ``"uniform"`` or ``"fps"`` (see ``videoccam.dataset.video_io``).
        target_fps: Sampling rate for ``"fps"``.
        max_frames: Most frames for ``"fps"``.

    Returns:
        The loaded :class:`Media`.

    Raises:
        MediaLoadError: If the file is missing or cannot be decoded (the message names the path).
        ValueError: On invalid sampling arguments or an unknown ``kind``.
    """
    kind = guess_media_kind(path) if kind is None else kind
    if kind == "image":
        frames = [load_image(path)]
    elif kind == "video":
        if sampling == "fps" and target_fps is None:
            raise ValueError("fps sampling needs a target rate (--fps / the FPS slider)")
        frames = load_video(path, num_frames=num_frames, sampling=sampling, target_fps=target_fps,
                            max_frames=max_frames)
    else:
        raise ValueError(f"media kind must be 'image' or 'video', got {kind!r}")
    return Media(kind=kind, frames=frames, source=os.fspath(path))


def has_placeholder(text: str) -> bool:
    """Whether ``text`` contains an ``<image>`` or ``<video>`` placeholder."""
    return any(token in text for token in MEDIA_TOKENS)


def strip_placeholders(text: str) -> str:
    """``text`` without media placeholders (and the newline that usually follows one), for display."""
    for token in MEDIA_TOKENS:
        text = text.replace(token + "\n", "").replace(token, "")
    return text.strip()


@dataclass
class ChatSession:
    """A conversation with a Video-CCAM model about at most one image or video.

    Args:
        model: ``VideoCCAMForCausalLM`` (eval mode, on its device), as loaded by
            :func:`videoccam.inference.load.load_model` or ``AutoModel.from_pretrained(folder, trust_remote_code=True)``.
        tokenizer: Its tokenizer (with the chat template).
        image_processor: Its image processor.

    Attributes:
        messages: The conversation so far, ``[{"role": "user"|"assistant", "content": str}, ...]``; the first user
            turn holds the placeholder when there is media.
        media: The conversation's image or video, or None (text-only).
    """

    model: Any
    tokenizer: Any
    image_processor: Any
    messages: list[dict[str, str]] = field(default_factory=list)
    media: Media | None = None
    _media_embeds: Any = field(default=None, repr=False)

    # -- state ----------------------------------------------------------------------------------------
    def reset(self, clear_media: bool = False) -> None:
        """Forget the conversation; keep the media unless ``clear_media``."""
        self.messages = []
        if clear_media:
            self.media = None
            self._media_embeds = None

    def set_media(self, media: Media | None) -> None:
        """Attach new media (or none) and start a new conversation."""
        self.messages = []
        self.media = media
        self._media_embeds = None

    @property
    def num_turns(self) -> int:
        """Completed question-answer pairs."""
        return sum(1 for m in self.messages if m["role"] == "assistant")

    def user_content(self, text: str) -> str:
        """The content of the next user message for ``text``: adds the placeholder on the first turn.

        Raises:
            ValueError: If ``text`` is empty, or it has a placeholder where none is allowed (a later turn, or a
                conversation without media).
        """
        text = text.strip()
        if not text:
            raise ValueError("the message is empty; type a question")
        first_turn = not self.messages
        if has_placeholder(text):
            if self.media is None:
                raise ValueError(
                    f"the message contains a media placeholder ({'/'.join(MEDIA_TOKENS)}) but no image or video is "
                    "loaded; load one first or remove the placeholder"
                )
            if not first_turn:
                raise ValueError(
                    f"turn {self.num_turns + 1} contains a media placeholder ({'/'.join(MEDIA_TOKENS)}); the media "
                    "belongs to the first turn only, remove the placeholder"
                )
            return text
        if first_turn and self.media is not None:
            return f"{self.media.placeholder}\n{text}"
        return text

    # -- model calls ----------------------------------------------------------------------------------
    def _embeds(self) -> Any:
        """The media's ``[q, d_l]`` LLM embeddings, encoded on first use."""
        if self.media is None:
            return None
        if self._media_embeds is None:
            import torch

            pixel_values = self.image_processor(images=self.media.frames, return_tensors="pt")["pixel_values"]
            with torch.inference_mode():
                self._media_embeds = self.model.encode_media(pixel_values, [len(self.media.frames)])[0]
        return self._media_embeds

    def _chat(self, messages: list[dict[str, str]], settings: GenerationSettings, streamer: Any = None) -> str:
        import torch

        extra = {} if streamer is None else {"streamer": streamer}
        embeds = self._embeds()
        with torch.inference_mode():
            replies = self.model.chat(
                [messages],
                None,
                self.tokenizer,
                self.image_processor,
                media_embeds=None if embeds is None else [embeds],
                **settings.generate_kwargs(),
                **extra,
            )
        return replies[0]

    def ask(self, text: str, settings: GenerationSettings | None = None, streamer: Any = None) -> str:
        """Send one user message and return the reply; the pair is added to :attr:`messages`.

        Args:
            text: The user's message (placeholder optional, see :meth:`user_content`).
            settings: Decoding options; defaults to greedy with 512 new tokens.
            streamer: Optional transformers streamer (``TextStreamer`` prints as it generates).

        Returns:
            The reply (special tokens removed, stripped).

        Raises:
            ValueError: On an invalid message (see :meth:`user_content`). The conversation is unchanged then,
                and also when generation fails.
        """
        settings = settings or GenerationSettings()
        content = self.user_content(text)
        messages = [*self.messages, {"role": "user", "content": content}]
        reply = self._chat(messages, settings, streamer)
        self.messages = [*messages, {"role": "assistant", "content": reply}]
        return reply

    def stream(
        self, text: str, settings: GenerationSettings | None = None, timeout: float | None = None
    ) -> Iterator[str]:
        """Like :meth:`ask`, but yield the reply as it grows (each item is the text so far).

        The last item is the final reply exactly as :meth:`ask` returns it (decoded once more in full, so
        whitespace matches); the pair is added to :attr:`messages` when the generator finishes.

        Args:
            text: The user's message.
            settings: Decoding options.
            timeout: Seconds to wait for each new piece of text before raising ``queue.Empty``; None waits.

        Raises:
            ValueError: On an invalid message, before anything is yielded.
            Exception: Whatever generation raised on the worker thread, re-raised here.
        """
        from transformers import TextIteratorStreamer

        settings = settings or GenerationSettings()
        content = self.user_content(text)
        messages = [*self.messages, {"role": "user", "content": content}]
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=timeout)
        result: dict[str, Any] = {}

        def worker() -> None:
            try:
                result["reply"] = self._chat(messages, settings, streamer)
            except BaseException as error:  # noqa: BLE001 - re-raised on the caller's thread below
                result["error"] = error
                streamer.end()  # unblock the consumer; generate() never reached its own end()

        thread = threading.Thread(target=worker, name="videoccam-chat", daemon=True)
        thread.start()
        partial = ""
        for piece in streamer:
            partial += piece
            if partial.strip():
                yield partial.lstrip()  # the final reply is stripped too, so every item is a prefix of it
        thread.join()
        if "error" in result:
            raise result["error"]
        reply = result["reply"]
        self.messages = [*messages, {"role": "assistant", "content": reply}]
        yield reply


def media_error_message(error: MediaLoadError) -> str:
    """A user-facing message for a media that could not be loaded (names the path)."""
    return f"cannot load {error.path}: {error.reason}"
