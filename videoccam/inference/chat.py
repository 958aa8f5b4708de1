"""Multi-turn chat with one image or video: the logic shared by ``tools/chat.py`` and ``tools/web_demo.py``.

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

import argparse
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from PIL import Image

from videoccam.constants import IMAGE_TOKEN, MEDIA_TOKENS, VIDEO_TOKEN
from videoccam.dataset.video_io import IMAGE_EXTENSIONS, MediaLoadError, load_image, load_video

__all__ = [
    "ChatSession",
    "GenerationSettings",
    "Media",
    "add_model_args",
    "add_sampling_args",
    "check_model_args",
    "generation_settings",
    "guess_media_kind",
    "has_placeholder",
    "load_media",
    "load_model_from_args",
    "media_error_message",
    "media_from_args",
    "parse_cfg_options",
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
        model: ``VideoCCAMForCausalLM`` (eval mode, on its device), as loaded by ``videoccam.inference.load_model``
            or ``AutoModel.from_pretrained(folder, trust_remote_code=True)``.
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


# --------------------------------------------------------------------------------------------------
# Command-line helpers shared by tools/chat.py and tools/web_demo.py
# --------------------------------------------------------------------------------------------------


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """Model-loading flags shared by the chat tools."""
    group = parser.add_argument_group("model (give --model, or --config and --checkpoint)")
    group.add_argument("--model", help="converted Hugging Face model folder (tools/convert_to_hf.py)")
    group.add_argument("--config", help="training config (with --checkpoint)")
    group.add_argument("--checkpoint",
                       help="training checkpoint: .pth file, DeepSpeed folder or work dir (with --config)")
    group.add_argument("--cfg-options", nargs="+", default=None, metavar="KEY=VALUE",
                       help="override settings of --config, as in tools/train.py")
    group.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto (cuda when available)")
    group.add_argument("--dtype", default=None,
                       help="float32, bfloat16 or float16 (default: the loader's choice, fp32 on CPU)")


def add_sampling_args(parser: argparse.ArgumentParser) -> None:
    """Frame-sampling and decoding flags shared by the chat tools."""
    media = parser.add_argument_group("frame sampling")
    media.add_argument("--num-frames", type=int, default=16, help="frames sampled per video (uniform; default 16)")
    media.add_argument("--sampling", choices=["uniform", "fps"], default="uniform",
                       help="uniform: midpoints of equal segments; fps: --fps frames per second, at most --max-frames")
    media.add_argument("--fps", type=float, default=None, help="target rate for --sampling fps (default 1.0)")
    media.add_argument("--max-frames", type=int, default=None,
                       help="most frames for --sampling fps (default: --num-frames)")
    gen = parser.add_argument_group("generation")
    gen.add_argument("--max-new-tokens", type=int, default=512, help="reply budget in tokens (default 512)")
    gen.add_argument("--do-sample", action="store_true", help="sample instead of greedy decoding")
    gen.add_argument("--temperature", type=float, default=None,
                     help="sampling temperature; a value > 0 turns sampling on, 0 means greedy (default: greedy)")
    gen.add_argument("--top-p", type=float, default=None, help="nucleus sampling threshold (with sampling)")
    gen.add_argument("--seed", type=int, default=None, help="random seed for sampling")


def generation_settings(args: argparse.Namespace) -> GenerationSettings:
    """Decoding options from the parsed flags.

    Raises:
        ValueError: On invalid values.
    """
    do_sample = bool(args.do_sample)
    temperature = 1.0
    if args.temperature is not None:
        if args.temperature < 0:
            raise ValueError(f"--temperature must be >= 0, got {args.temperature}")
        if args.temperature == 0:
            do_sample = False
        else:
            do_sample, temperature = True, args.temperature
    return GenerationSettings(max_new_tokens=args.max_new_tokens, do_sample=do_sample, temperature=temperature,
                              top_p=args.top_p)


def check_model_args(args: argparse.Namespace) -> None:
    """Validate the model flags before anything slow happens.

    Raises:
        ValueError: If neither or both ways of naming a model are given.
        FileNotFoundError: If a given path does not exist.
    """
    if args.model and (args.config or args.checkpoint):
        raise ValueError("give either --model or --config with --checkpoint, not both")
    if not args.model and not (args.config and args.checkpoint):
        raise ValueError("no model: give a converted model folder (--model) or both --config and --checkpoint")
    for flag, path in (("--model", args.model), ("--config", args.config), ("--checkpoint", args.checkpoint)):
        if path and not os.path.exists(path):
            raise FileNotFoundError(f"{flag} {path}: no such file or directory")


def resolve_device(device: str | None) -> str:
    """``auto`` (or nothing) -> ``cuda`` when available, else ``cpu``; anything else unchanged."""
    if device in (None, "", "auto"):
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_dtype(dtype: str | None) -> Any:
    """A dtype name -> ``torch.dtype`` (None stays None: the loader picks).

    Raises:
        ValueError: On an unknown name.
    """
    if dtype in (None, "", "auto"):
        return None
    import torch

    names = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}
    if dtype not in names:
        raise ValueError(f"unknown --dtype {dtype!r}; expected one of {sorted(names)}")
    return names[dtype]


def parse_cfg_options(options: list[str] | None) -> dict[str, Any] | None:
    """``["a.b=1", "c=[1,2]"]`` -> ``{"a.b": 1, "c": [1, 2]}``, parsed like mmengine's ``--cfg-options``."""
    if not options:
        return None
    from mmengine.config import DictAction

    namespace = argparse.Namespace()
    DictAction(option_strings=["--cfg-options"], dest="cfg_options")(None, namespace, options)
    return namespace.cfg_options


def load_model_from_args(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """Load ``(model, tokenizer, image_processor)`` with ``videoccam.inference.load_model``, in eval mode."""
    from videoccam.inference import load_model

    model, tokenizer, image_processor = load_model(
        model_path=args.model,
        config=args.config,
        checkpoint=args.checkpoint,
        device=resolve_device(args.device),
        dtype=resolve_dtype(args.dtype),
        cfg_options=parse_cfg_options(args.cfg_options),
    )
    return model.eval(), tokenizer, image_processor


def media_from_args(args: argparse.Namespace, path: str, kind: str) -> Media:
    """Load ``path`` as ``kind`` with the sampling flags."""
    target_fps = args.fps if args.fps is not None else (1.0 if args.sampling == "fps" else None)
    return load_media(path, kind=kind, num_frames=args.num_frames, sampling=args.sampling, target_fps=target_fps,
                      max_frames=args.max_frames)
