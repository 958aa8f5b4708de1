"""Model backends of the evaluators.

The evaluators talk to a model only through :class:`VideoQABackend`: ``encode`` turns a video's frames into visual
features once, and ``answer`` generates greedy replies for a batch of prompts, each with the features of its video.
This split lets a frame-count sweep encode each video once per frame count and reuse the features for all of its
questions (and for both Video-MME subtitle settings).

Backends:

* :class:`HFVideoCCAMBackend` wraps the exported Hugging Face model (``model.encode_media`` + ``model.chat``).
* :class:`ScriptedBackend` replies from a list or a function of the prompt; tests and dry runs use it.
* :func:`load_backend` builds the Hugging Face backend from a converted folder or a config + checkpoint.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from PIL import Image


@runtime_checkable
class VideoQABackend(Protocol):
    """What an evaluator needs from a model."""

    def encode(self, frames: list[Image.Image]) -> object:
        """Visual features of one video (``frames`` in temporal order); opaque to the evaluators."""
        ...

    def answer(self, prompts: list[str], media: list[object], max_new_tokens: int = 16) -> list[str]:
        """Greedy replies, one per prompt.

        Args:
            prompts: User texts, each starting with ``"<video>\\n"``.
            media: For each prompt, the object ``encode`` returned for its video.
            max_new_tokens: Generation budget.
        """
        ...


# ----------------------------------------------------------------------------------------------------------------
# Scripted backend (tests, dry runs)
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScriptedMedia:
    """What :class:`ScriptedBackend.encode` returns: a frame count and a digest of the pixels."""

    num_frames: int
    digest: str
    call_index: int


class ScriptedBackend:
    """A backend that needs no model: replies come from a list (in order) or from a function of the prompt.

    It records every call (``encode_calls``, ``answer_calls``) so tests can check what the evaluators did.

    Args:
        replies: A sequence of replies consumed one per prompt, or a callable ``prompt -> reply`` (with
            ``batch_aware``: ``(prompt, prompts of its batch) -> reply``).
        fail_after: Test hook: once this many prompts have been answered, the next ``answer`` call kills the
            process with ``os._exit(exit_code)`` (no clean-up, like a crash or ``kill -9``).
        exit_code: Exit status used by ``fail_after``.
        batch_aware: Call ``replies`` with the whole batch too, so that a reply changes when its batch does (as a
            real model's may, through padding); tests use it to check that batches do not depend on sharding.

    Raises:
        ValueError: In ``answer``, when the reply list runs out or ``media`` does not come from ``encode``.
    """

    def __init__(
        self,
        replies: Sequence[str] | Callable[..., str],
        fail_after: int | None = None,
        exit_code: int = 17,
        batch_aware: bool = False,
    ) -> None:
        self._replies = replies
        self.batch_aware = batch_aware
        self._next = 0
        self.fail_after = fail_after
        self.exit_code = exit_code
        self.num_answered = 0
        self.encode_calls: list[ScriptedMedia] = []
        self.answer_calls: list[tuple[list[str], list[ScriptedMedia], int]] = []

    def encode(self, frames: list[Image.Image]) -> ScriptedMedia:
        """Return a token describing the frames (count + pixel digest)."""
        if not frames:
            raise ValueError("ScriptedBackend.encode got no frames")
        h = hashlib.sha1()
        for im in frames:
            h.update(im.tobytes())
        media = ScriptedMedia(num_frames=len(frames), digest=h.hexdigest()[:16], call_index=len(self.encode_calls))
        self.encode_calls.append(media)
        return media

    def answer(self, prompts: list[str], media: list[object], max_new_tokens: int = 16) -> list[str]:
        """Return the scripted replies for ``prompts``."""
        if self.fail_after is not None and self.num_answered >= self.fail_after:
            os._exit(self.exit_code)
        if len(prompts) != len(media):
            raise ValueError(f"{len(prompts)} prompts but {len(media)} media")
        for m in media:
            if not isinstance(m, ScriptedMedia):
                raise ValueError(f"media must come from ScriptedBackend.encode, got {type(m).__name__}")
        self.answer_calls.append((list(prompts), list(media), max_new_tokens))  # type: ignore[arg-type]
        out = []
        for p in prompts:
            if callable(self._replies):
                out.append(self._replies(p, list(prompts)) if self.batch_aware else self._replies(p))
            else:
                if self._next >= len(self._replies):
                    raise ValueError(f"ScriptedBackend ran out of replies after {len(self._replies)}")
                out.append(self._replies[self._next])
                self._next += 1
        self.num_answered += len(prompts)
        return out


_HASH_FORMATS = ("({})", "{}.", "Answer: {}", "The answer is {}", "{}")


def hash_reply(prompt: str, num_letters: int = 4) -> str:
    """A deterministic pseudo-random reply for a prompt, in one of several answer formats.

    About one prompt in eleven gets an unparseable reply. Used by the ``hash`` scripted backend of
    ``tools/eval.py`` (dry runs, the resumability test).
    """
    n = int(hashlib.sha1(prompt.encode("utf-8")).hexdigest(), 16)
    if n % 11 == 0:
        return "I cannot tell from the video."
    letter = "ABCDEFGH"[(n // 11) % num_letters]
    return _HASH_FORMATS[(n // 97) % len(_HASH_FORMATS)].format(letter)


def hash_batch_reply(prompt: str, batch: Sequence[str]) -> str:
    """Like :func:`hash_reply`, but of the prompt and its whole batch (in order): the reply changes whenever the
    batch does."""
    return hash_reply(prompt + "\n\x1f" + "\x1f".join(batch))


def build_scripted_backend(mode: str, fail_after: int | None = None) -> ScriptedBackend:
    """A scripted backend by name: ``hash`` (see :func:`hash_reply`), ``batch-hash`` (:func:`hash_batch_reply`)
    or ``const:<reply>`` (always that reply).

    Raises:
        ValueError: On an unknown mode.
    """
    if mode == "hash":
        return ScriptedBackend(hash_reply, fail_after=fail_after)
    if mode == "batch-hash":
        return ScriptedBackend(hash_batch_reply, fail_after=fail_after, batch_aware=True)
    if mode.startswith("const:"):
        reply = mode[len("const:"):]
        return ScriptedBackend(lambda _prompt: reply, fail_after=fail_after)
    raise ValueError(f"unknown scripted backend {mode!r}; expected 'hash', 'batch-hash' or 'const:<reply>'")


# ----------------------------------------------------------------------------------------------------------------
# Hugging Face backend
# ----------------------------------------------------------------------------------------------------------------


class HFVideoCCAMBackend:
    """Backend on the exported Hugging Face Video-CCAM model.

    Uses ``model.encode_media(pixel_values [f, 3, H, W], num_frames=[f]) -> [1, q, d_l]`` once per video (keeping
    the ``[q, d_l]`` item) and ``model.chat(messages, None, tokenizer, image_processor, max_new_tokens=...,
    do_sample=False, media_embeds=[[q, d_l] per conversation])`` per batch of questions.

    Args:
        model: The ``VideoCCAMForCausalLM`` (in eval mode, on its device).
        tokenizer: Its tokenizer.
        image_processor: Its ``SiglipImageProcessor``.
    """

    def __init__(self, model: Any, tokenizer: Any, image_processor: Any) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.image_processor = image_processor

    def _device_dtype(self) -> tuple[Any, Any]:
        param = next(self.model.parameters())
        return param.device, param.dtype

    def encode(self, frames: list[Image.Image]) -> Any:
        """Encode one video's frames into its ``[q, d_l]`` LLM embeddings."""
        import torch

        device, dtype = self._device_dtype()
        pixel_values = self.image_processor(images=frames, return_tensors="pt")["pixel_values"]  # [f, 3, H, W]
        with torch.inference_mode():
            embeds = self.model.encode_media(pixel_values.to(device=device, dtype=dtype), num_frames=[len(frames)])
        return embeds[0]  # [q, d_l]: the per-conversation form chat(media_embeds=...) takes

    def answer(self, prompts: list[str], media: list[object], max_new_tokens: int = 16) -> list[str]:
        """Greedy replies for a batch of prompts with precomputed features."""
        import torch

        if len(prompts) != len(media):
            raise ValueError(f"{len(prompts)} prompts but {len(media)} media")
        messages = [[{"role": "user", "content": p}] for p in prompts]
        with torch.inference_mode():
            return self.model.chat(
                messages,
                None,
                self.tokenizer,
                self.image_processor,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                media_embeds=list(media),
            )


def resolve_device_dtype(device: str | None, dtype: str | None) -> tuple[str, Any]:
    """Pick the device (``cuda`` when available unless given) and the torch dtype (``auto``: bf16 on GPU, fp32 on
    CPU), with the dtype names of :mod:`videoccam.cli`.

    Raises:
        ValueError: On an unknown dtype name.
    """
    import torch

    from videoccam.cli import resolve_device, resolve_dtype

    device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype)
    if torch_dtype is None:
        torch_dtype = torch.float32 if device == "cpu" else torch.bfloat16
    return device, torch_dtype


def load_backend(
    model_path: str | None = None,
    config: str | None = None,
    checkpoint: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
    cfg_options: dict[str, Any] | None = None,
) -> HFVideoCCAMBackend:
    """Load a Video-CCAM model as an evaluation backend, with :func:`videoccam.inference.load.load_model`.

    Give either ``model_path`` (a converted single-folder Hugging Face model) or ``config`` and ``checkpoint`` (a
    training config and its checkpoint, converted in memory).

    Args:
        model_path: Converted model folder.
        config: Training config file.
        checkpoint: Training checkpoint (file or folder).
        device: ``cpu``, ``cuda``, ``cuda:1``...; default: CUDA when available.
        dtype: ``auto`` (bf16 on GPU, fp32 on CPU), ``float32``, ``bfloat16`` or ``float16``.
        cfg_options: Overrides of ``config``.

    Returns:
        The backend, with the model in eval mode on ``device``.

    Raises:
        ValueError: If neither or both ways are given, or only one of config / checkpoint.
        FileNotFoundError: If a given path does not exist.
    """
    from videoccam.inference.load import check_model_source, load_model

    check_model_source(model_path, config, checkpoint)
    device, torch_dtype = resolve_device_dtype(device, dtype)
    model, tokenizer, image_processor = load_model(
        model_path=model_path, config=config, checkpoint=checkpoint, device=device, dtype=torch_dtype,
        cfg_options=cfg_options,
    )
    return HFVideoCCAMBackend(model.eval(), tokenizer, image_processor)
