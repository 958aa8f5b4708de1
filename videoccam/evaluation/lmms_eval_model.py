"""Video-CCAM as an lmms-eval model: ``lmms-eval --model videoccam --model_args pretrained=OUT_DIR,num_frames=16``.

`lmms-eval <https://github.com/EvolvingLMMs-Lab/lmms-eval>`_ runs MVBench, Video-MME, MLVU and many other
benchmarks under one protocol. This adapter loads a converted single-folder model (``tools/convert_to_hf.py``)
with ``AutoModel.from_pretrained(path, trust_remote_code=True)`` and answers through its ``chat`` method; neither
xtuner nor mmengine is imported. It is registered through lmms-eval's ``lmms_eval.models`` entry-point group
(``setup.py``), so installing this package in the environment of lmms-eval makes ``--model videoccam`` available::

    pip install lmms-eval
    pip install --no-deps -e /path/to/videoccam   # the adapter needs torch, transformers, pillow, decord or av
    lmms-eval --model videoccam --model_args pretrained=OUT_DIR,num_frames=16 --tasks mvbench --batch_size 1

Requests (``generate_until``): each ``Instance.args`` is ``(context, generation_kwargs, doc_to_visual, doc_id,
task, split)`` and ``doc_to_visual(doc)`` gives the request's media: a video path (file, frame folder or GIF),
an image path, PIL images, or nothing. A video is sampled with the project's sampler
(:class:`videoccam.dataset.video_io.FrameSampling`: ``num_frames`` segment midpoints with ``sampling=uniform``,
or ``target_fps`` capped at ``max_frames`` with ``sampling=fps``); one image is a one-frame video; several PIL
images are taken as the frames of one video, in order (Video-CCAM takes one image or video per question). The
prompt is ``<video>\\n{context}`` (``<image>`` for an image) in the folder's chat template; generation stops at
the end-of-turn token and at the request's ``until`` strings; ``temperature`` > 0 samples, otherwise greedy.
``loglikelihood`` scores a continuation after the same prompt (multiple-choice tasks of that output type).

Model args (``--model_args key=value,...``): ``pretrained`` (the folder), ``num_frames`` (16), ``sampling``
(``uniform`` | ``fps``), ``target_fps``, ``max_frames``, ``max_new_tokens`` (default budget, 128),
``batch_size`` (1), ``device`` (``auto``: CUDA when available), ``dtype`` (``auto``: bf16 on GPU, fp32 on CPU),
``attn_implementation`` (the folder's default when unset).

Several processes (``accelerate launch --num_processes N -m lmms_eval ...`` or ``torchrun --nproc_per_node=N -m
lmms_eval ...``): the adapter takes its rank and world size from the launcher (``RANK``, ``WORLD_SIZE``: global,
so several nodes work too), which lmms-eval reads as ``lm.rank`` / ``lm.world_size`` to give each process its
share of the requests and to gather the replies on rank 0; each process loads the model on ``cuda:LOCAL_RANK``
(more processes on a node than GPUs stop with an error), or on the CPU with ``device=cpu``. Tested on CPU with two
processes under ``torchrun``: each answers its share, and the results are those of one process.

Tested with lmms-eval 0.7.3 (its ``Instance``, model registry and ``simple_evaluate`` on a local task),
transformers 4.48.0 (tests/evaluation/test_lmms_eval_model.py).

The class :class:`VideoCCAM` subclasses lmms-eval's ``lmms`` base class, so it only exists where lmms-eval is
installed: it is created on first access (``from videoccam.evaluation.lmms_eval_model import VideoCCAM``); this
module itself imports without lmms-eval. All the logic lives in :class:`VideoCCAMLmmsMixin`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from videoccam.dataset.video_io import IMAGE_EXTENSIONS, FrameSampling
from videoccam.evaluation.distributed import Ranks, device_for_rank

__all__ = ["MODEL_ID", "VideoCCAMLmmsMixin", "lmms_eval_manifest"]

MODEL_ID = "videoccam"
"""The name lmms-eval knows the model by (``--model videoccam``)."""

LMMS_EVAL_VERSION_TESTED = "0.7.3"


def lmms_eval_manifest() -> Any:
    """The payload of the ``lmms_eval.models`` entry point: where lmms-eval finds the model class."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(model_id=MODEL_ID, simple_class_path=f"{__name__}.VideoCCAM")


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        if value.strip().lower() in ("1", "true", "yes", "y", "on"):
            return True
        if value.strip().lower() in ("0", "false", "no", "n", "off", ""):
            return False
        raise ValueError(f"expected a boolean, got {value!r}")
    return bool(value)


def _optional(value: Any, cast: Any) -> Any:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null")):
        return None
    return cast(value)


class VideoCCAMLmmsMixin:
    """The adapter's logic, independent of lmms-eval's base class (see the module docstring for the arguments).

    Raises:
        FileNotFoundError: if ``pretrained`` is not a converted model folder.
        ValueError: for an unknown ``sampling`` or an argument that does not parse.
    """

    is_simple = True

    def __init__(
        self,
        pretrained: str,
        num_frames: int | str = 16,
        sampling: str = "uniform",
        target_fps: float | str | None = None,
        max_frames: int | str | None = None,
        max_new_tokens: int | str = 128,
        batch_size: int | str = 1,
        device: str | None = "auto",
        dtype: str | None = "auto",
        attn_implementation: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        unused = {k: v for k, v in kwargs.items() if v is not None}
        if unused:
            raise ValueError(f"unknown videoccam model args {sorted(unused)}; see videoccam.evaluation.lmms_eval_model")
        if not (Path(pretrained) / "config.json").is_file():
            raise FileNotFoundError(f"pretrained={pretrained} is not a converted Video-CCAM folder (no config.json); "
                                    "write one with tools/convert_to_hf.py")  # fmt: skip
        self.sampling = FrameSampling(
            num_frames=int(num_frames),
            sampling=str(sampling),
            target_fps=_optional(target_fps, float),
            max_frames=_optional(max_frames, int),
        )
        self.max_new_tokens = int(max_new_tokens)
        self.batch_size_per_gpu = int(batch_size)
        # lmms-eval shards requests by lm.rank / lm.world_size (the `lmms` base class sets 0 / 1)
        ranks = Ranks.from_env()
        self._rank, self._world_size = ranks.rank, ranks.world_size
        self._load(str(pretrained), device_for_rank(_optional(device, str), ranks), dtype,
                   _optional(attn_implementation, str))  # fmt: skip

    def _load(self, path: str, device: str, dtype: str | None, attn_implementation: str | None) -> None:
        from transformers import AutoModel, AutoTokenizer

        from videoccam.evaluation.backend import resolve_device_dtype
        from videoccam.inference.load import load_image_processor

        self.device, torch_dtype = resolve_device_dtype(device, _optional(dtype, str))
        kwargs: dict[str, Any] = {"trust_remote_code": True, "torch_dtype": torch_dtype}
        if attn_implementation:
            kwargs["attn_implementation"] = attn_implementation
        self.model = AutoModel.from_pretrained(path, **kwargs).to(self.device).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.image_processor = load_image_processor(path)  # PIL resize, as in training

    # -- media -------------------------------------------------------------------------------------------
    def _frames(self, visual: Any) -> tuple[str, list[Image.Image]]:
        """(placeholder, frames) of one request's ``doc_to_visual`` output."""
        visuals = list(visual) if isinstance(visual, (list, tuple)) else [visual]
        visuals = [v for v in visuals if v is not None]
        if not visuals:
            return "", []
        if all(isinstance(v, Image.Image) for v in visuals):
            frames = [v.convert("RGB") for v in visuals]
            return ("<image>" if len(frames) == 1 else "<video>"), frames
        if len(visuals) == 1 and isinstance(visuals[0], (str, os.PathLike)):
            path = Path(visuals[0])
            kind = "image" if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file() else "video"
            return f"<{kind}>", self.sampling.load(path, kind).frames
        kinds = sorted({type(v).__name__ for v in visuals})
        raise ValueError(
            f"Video-CCAM takes one video, one image or a list of PIL frames per question; got {len(visuals)} "
            f"visuals of types {kinds}"
        )

    @staticmethod
    def _content(context: str, placeholder: str) -> str:
        if not placeholder or "<image>" in context or "<video>" in context:
            return context
        return f"{placeholder}\n{context}"

    # -- lmms-eval API -----------------------------------------------------------------------------------
    def _doc_visual(self, doc_to_visual: Any, doc_id: Any, task: str, split: str) -> Any:
        if doc_to_visual is None:
            return None
        return doc_to_visual(self.task_dict[task][split][doc_id])

    def _generate_kwargs(self, gen_kwargs: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        gen_kwargs = dict(gen_kwargs or {})
        until = gen_kwargs.pop("until", None) or []
        until = [until] if isinstance(until, str) else list(until)
        temperature = float(gen_kwargs.get("temperature") or 0.0)
        do_sample = _as_bool(gen_kwargs.get("do_sample", False)) or temperature > 0
        out: dict[str, Any] = {"max_new_tokens": int(gen_kwargs.get("max_new_tokens") or self.max_new_tokens),
                               "do_sample": do_sample}  # fmt: skip
        if do_sample:
            out["temperature"] = temperature or 1.0
            if gen_kwargs.get("top_p") is not None:
                out["top_p"] = float(gen_kwargs["top_p"])
        if int(gen_kwargs.get("num_beams") or 1) > 1:
            out["num_beams"] = int(gen_kwargs["num_beams"])
        return out, [u for u in until if u]

    def generate_until(self, requests: Sequence[Any]) -> list[str]:
        """One reply per request, in request order (see the module docstring)."""
        import torch

        replies: list[str] = []
        batch: list[tuple[str, list[Image.Image]]] = []
        batch_kwargs: tuple[dict[str, Any], list[str]] | None = None

        def flush() -> None:
            if not batch:
                return
            kwargs, until = batch_kwargs
            messages = [[{"role": "user", "content": content}] for content, _ in batch]
            with torch.inference_mode():
                out = self.model.chat(messages, [frames or None for _, frames in batch], self.tokenizer,
                                      self.image_processor, **kwargs)  # fmt: skip
            for reply in out:
                for stop in until:
                    reply = reply.split(stop)[0]
                replies.append(reply.strip())
            batch.clear()

        for request in requests:
            context, gen_kwargs, doc_to_visual, doc_id, task, split = request.args
            placeholder, frames = self._frames(self._doc_visual(doc_to_visual, doc_id, task, split))
            kwargs = self._generate_kwargs(gen_kwargs)
            if batch and (kwargs != batch_kwargs or len(batch) >= self.batch_size_per_gpu):
                flush()
            batch_kwargs = kwargs
            batch.append((self._content(context, placeholder), frames))
        flush()
        return replies

    def loglikelihood(self, requests: Sequence[Any]) -> list[tuple[float, bool]]:
        """(log-probability of the continuation after the prompt, whether greedy decoding would produce it)."""
        import torch

        from videoccam.model.hf.modeling_videoccam import tokenize_with_media

        results = []
        config = self.model.config
        for request in requests:
            context, continuation, doc_to_visual, doc_id, task, split = request.args
            if callable(continuation):  # some tasks pass doc_to_target
                continuation = continuation(self.task_dict[task][split][doc_id])
            placeholder, frames = self._frames(self._doc_visual(doc_to_visual, doc_id, task, split))
            prompt = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": self._content(context, placeholder)}], tokenize=False,
                add_generation_prompt=True,
            )  # fmt: skip
            prompt_ids = tokenize_with_media(prompt, self.tokenizer, list(config.media_tokens), config.image_token_index)
            target_ids = self.tokenizer.encode(str(continuation), add_special_tokens=False)
            ids = torch.tensor([prompt_ids + target_ids], device=self.device)
            media = None
            with torch.inference_mode():
                if frames:
                    pixel_values = self.image_processor(frames, return_tensors="pt")["pixel_values"]
                    media = self.model.encode_media(pixel_values, [len(frames)])
                logits = self.model(input_ids=ids, media_embeds=media).logits[0].float()  # [l', vocab]
            # the spliced sequence is longer than ids by (q - 1) per media item; the targets are its last tokens
            n = len(target_ids)
            scores = logits[-n - 1 : -1].log_softmax(-1)  # positions predicting the continuation
            target = torch.tensor(target_ids, device=scores.device)
            logprob = float(scores.gather(-1, target[:, None]).sum())
            greedy = bool((scores.argmax(-1) == target).all())
            results.append((logprob, greedy))
        return results

    def generate_until_multi_round(self, requests: Sequence[Any]) -> list[str]:
        raise NotImplementedError("the videoccam lmms-eval model answers single-round requests only "
                                  "(generate_until, loglikelihood)")  # fmt: skip


def _define_class() -> type:
    try:
        from lmms_eval.api.model import lmms
    except ImportError as e:
        raise ImportError("videoccam.evaluation.lmms_eval_model.VideoCCAM needs lmms-eval: pip install lmms-eval "
                          f"(tested with {LMMS_EVAL_VERSION_TESTED})") from e  # fmt: skip

    class VideoCCAM(VideoCCAMLmmsMixin, lmms):
        """Video-CCAM for lmms-eval (``--model videoccam``); see :mod:`videoccam.evaluation.lmms_eval_model`."""

    VideoCCAM.__module__ = __name__
    VideoCCAM.__qualname__ = "VideoCCAM"
    return VideoCCAM


def __getattr__(name: str) -> Any:
    # PEP 562: VideoCCAM subclasses lmms-eval's base class, so it is defined on first access, where lmms-eval is
    # installed (lmms-eval's registry imports this module and then reads the attribute)
    if name == "VideoCCAM":
        cls = _define_class()
        globals()["VideoCCAM"] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
