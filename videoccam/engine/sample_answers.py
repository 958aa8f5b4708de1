"""SampleAnswersHook: what the model answers about fixed videos and images, every N iterations while it trains.

Every ``interval`` iterations and once at the end of training, the model being trained answers fixed questions
about fixed local videos or images (greedy decoding). Rank 0 prints the answers and writes them to the
visualizer (TensorBoard's TEXT tab and ``vis_data/texts.jsonl``, see :func:`videoccam.engine.visualizer.add_text`).

The prompts and frames go through the training dataset's own pipeline (its tokenizer, prompt template, frame
sampling and image preprocessing) and :meth:`VideoCCAMModel.generate`, which splices the media exactly as
training does: the answers show what the training forward sees. ``interval=0`` turns the hook off: it then reads
no file and runs nothing.

Distributed runs: with DDP and DeepSpeed ZeRO-1/2 every rank holds the whole model and rank 0 answers alone (the
others wait for it at the next collective). With ZeRO-3 the weights are partitioned and every module call
gathers them, so every rank prepares the same inputs and runs the same forwards (``synced_gpus`` decoding); only
rank 0 prints.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from mmengine.dist import get_rank, get_world_size
from mmengine.hooks import Hook
from mmengine.logging import print_log

from videoccam.dataset.records import RecordError, Sample, check_media_path, parse_record
from videoccam.engine.hooks import _datasets
from videoccam.engine.loops import unwrap_model
from videoccam.engine.visualizer import add_text
from videoccam.model.hf.constants import IMAGE_TOKEN, MEDIA_TOKENS, VIDEO_TOKEN
from videoccam.xtuner_compat import make_xtuner_importable

__all__ = ["SampleAnswersHook"]


def _strip_placeholder(text: str) -> str:
    for token in MEDIA_TOKENS:
        text = text.replace(token + "\n", "").replace(token, "")
    return text.strip()


def _training_dataset(dataset: Any) -> Any:
    """The first dataset (possibly wrapped) with the training pipeline the hook reuses."""
    for candidate in _datasets(dataset):
        if all(hasattr(candidate, a) for a in ("tokenizer", "template", "load_pixel_values", "single_media_rows",
                                               "data_root")):
            return candidate
    raise TypeError(
        f"SampleAnswersHook needs a VideoCCAMDataset in train_dataloader (its tokenizer, template and frame "
        f"pipeline), got {type(dataset).__name__}; remove the hook or set its interval to 0"
    )


class SampleAnswersHook(Hook):
    """Answers fixed questions about fixed media every ``interval`` iterations and at the end (module docstring).

    Args:
        interval: iterations between answers; 0 turns the hook off (no cost at all).
        samples: ``dict(video=PATH, question=TEXT)``, ``dict(image=PATH, question=TEXT)`` or ``dict(question=TEXT)``
            (text only), optionally with ``num_frames``. A question without a ``<video>`` / ``<image>``
            placeholder gets one in front. Empty: the first video record and the first image record of the
            training data, with their first question.
        root: folder relative paths are taken from; None: the training dataset's ``data_root``.
        num_frames: frames per video (None: the training dataset's sampling); a sample's ``num_frames`` wins.
        max_new_tokens: the answer budget.
        tag: visualizer tag prefix (one text per sample: ``<tag>/<i>``).

    Raises:
        ValueError: for a negative interval, or (before training) a sample with a missing or unreadable file.
    """

    priority = "LOW"

    def __init__(
        self,
        interval: int = 0,
        samples: Sequence[Mapping[str, Any]] = (),
        root: str | None = None,
        num_frames: int | None = None,
        max_new_tokens: int = 64,
        tag: str = "sample_answers",
    ) -> None:
        if not isinstance(interval, int) or isinstance(interval, bool) or interval < 0:
            raise ValueError(f"SampleAnswersHook interval must be an integer >= 0 (0 = off), got {interval!r}")
        for i, sample in enumerate(samples):
            if not isinstance(sample, Mapping) or not isinstance(sample.get("question"), str):
                raise ValueError(f"SampleAnswersHook sample {i} needs a 'question' string, got {sample!r}")
            if "video" in sample and "image" in sample:
                raise ValueError(f"SampleAnswersHook sample {i} has both 'video' and 'image'; give one")
        self.interval = interval
        self.samples = [dict(s) for s in samples]
        self.root = root
        self.num_frames = num_frames
        self.max_new_tokens = max_new_tokens
        self.tag = tag
        self.history: list[dict[str, Any]] = []  # rank 0: every answer given, {"step", "index", "question", ...}
        self._prepared: list[dict[str, Any]] = []
        self._stop_ids: list[int] = []
        self._stop_words: list[str] = []
        self._pad_id = 0
        self._tokenizer: Any = None
        self._all_ranks = False
        self._last_step = -1

    # -- preparation ------------------------------------------------------------------------------------
    def _default_samples(self, dataset: Any) -> list[tuple[Sample, torch.Tensor]]:
        """The first video and the first image of the training data whose media load, with their first question."""
        picked = []
        for kind in ("video", "image"):
            for row in dataset.single_media_rows(kind):
                found = dataset.sample(row)
                item = dataclasses.replace(found.media[0], num_frames=self.num_frames or found.media[0].num_frames)
                sample = dataclasses.replace(found, conversation=found.conversation[:1], media=(item,))
                try:
                    picked.append((sample, dataset.load_pixel_values(sample)))
                    break
                except ValueError as e:  # RecordError / MediaLoadError: a broken file in a skip-on-error dataset
                    print_log(f"SampleAnswersHook: not using {item.path}: {e}", "current", logging.WARNING)
        if not picked:
            raise ValueError("SampleAnswersHook has no samples and no video or image of the training data loads")
        return picked

    def _samples(self, dataset: Any) -> list[tuple[Sample, torch.Tensor | None]]:
        if not self.samples:
            return self._default_samples(dataset)
        root = self.root if self.root is not None else dataset.data_root
        out = []
        for i, spec in enumerate(self.samples):
            kind = "video" if "video" in spec else "image" if "image" in spec else "text"
            question = spec["question"]
            if kind != "text" and not any(t in question for t in MEDIA_TOKENS):
                question = f"{VIDEO_TOKEN if kind == 'video' else IMAGE_TOKEN}\n{question}"
            record = {"conversations": [{"from": "human", "value": question}, {"from": "gpt", "value": "-"}]}
            if kind != "text":
                record[kind] = str(spec[kind])
            frames = spec.get("num_frames", self.num_frames)
            if frames is not None and kind == "video":
                record["num_frames"] = frames
            try:
                sample = parse_record(record, i, "SampleAnswersHook samples", root)
                check_media_path(sample, "SampleAnswersHook samples")
            except RecordError as e:
                raise ValueError(f"{e}; fix the SampleAnswersHook samples (paths are relative to {root}) or set "
                                 "its interval to 0") from e  # fmt: skip
            out.append((sample, None if kind == "text" else dataset.load_pixel_values(sample)))
        return out

    def _prompt_ids(self, sample: Sample, dataset: Any) -> list[int]:
        """The training prompt of the sample's first question (template, BOS, placeholder id), no answer."""
        make_xtuner_importable()
        from xtuner.dataset.map_fns import template_map_fn
        from xtuner.dataset.utils import encode_fn

        turn = {k: v for k, v in sample.conversation[0].items() if k in ("input", "system")}
        example = template_map_fn({"conversation": [dict(turn, output="")]}, dataset.template)
        encoded = encode_fn(example, dataset.tokenizer, max_length=10**9, input_ids_with_output=False,
                            with_image_token=sample.kind != "text")  # fmt: skip
        return encoded["input_ids"]

    def _stops(self, dataset: Any) -> None:
        tokenizer = dataset.tokenizer
        words = [w for w in (dataset.template.get("STOP_WORDS") or []) if w]
        ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
        for word in words:
            encoded = tokenizer.encode(word, add_special_tokens=False)
            if len(encoded) == 1:
                ids.add(encoded[0])
        self._stop_ids, self._stop_words = sorted(ids), words
        self._pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (self._stop_ids or [0])[0]
        self._tokenizer = tokenizer

    def before_train(self, runner) -> None:
        if self.interval == 0:
            return
        model = unwrap_model(runner.model)
        # ZeRO-3 partitions the weights (ds_id): a forward on one rank alone would wait forever for the others
        self._all_ranks = get_world_size() > 1 and any(hasattr(p, "ds_id") for p in model.parameters())
        if not (self._all_ranks or get_rank() == 0):
            return
        dataset = _training_dataset(runner.train_dataloader.dataset)
        self._stops(dataset)
        for sample, pixel_values in self._samples(dataset):
            self._prepared.append({
                "question": _strip_placeholder(sample.conversation[0]["input"]),
                "media": str(sample.media[0].path) if sample.media else None,
                "input_ids": torch.tensor(self._prompt_ids(sample, dataset), dtype=torch.long),
                "pixel_values": pixel_values,
                # uint8 frames (the dataset's normalize_in_model) are normalised by the model, as in training
                "pixel_affine": dataset.batch_processor.affine
                if pixel_values is not None and pixel_values.dtype == torch.uint8 else None,
            })  # fmt: skip

    # -- answering --------------------------------------------------------------------------------------
    def _decode(self, tokens: torch.Tensor) -> str:
        text = self._tokenizer.decode(tokens, skip_special_tokens=True)
        for word in self._stop_words:  # stop words that are not single special tokens
            text = text.split(word)[0]
        return text.strip()

    def answer(self, runner, step: int) -> list[str] | None:
        """Answer every sample now; returns the answers on the ranks that computed them (None elsewhere)."""
        if not self._prepared:
            return None
        model = unwrap_model(runner.model)
        device = model.llm.get_input_embeddings().weight.device
        was_training = model.training
        model.eval()
        answers = []
        try:
            for item in self._prepared:
                pixel_values = item["pixel_values"]
                data = {"input_ids": item["input_ids"][None].to(device),
                        "attention_mask": torch.ones(1, len(item["input_ids"]), dtype=torch.long, device=device),
                        "pixel_values": None if pixel_values is None else pixel_values.to(device),
                        "num_frames": [] if pixel_values is None else [int(pixel_values.shape[0])]}  # fmt: skip
                if item["pixel_affine"] is not None:
                    data["pixel_affine"] = item["pixel_affine"].to(device)
                tokens = model.generate(data, max_new_tokens=self.max_new_tokens, do_sample=False,
                                        eos_token_id=self._stop_ids or None, pad_token_id=self._pad_id)  # fmt: skip
                answers.append(self._decode(tokens[0].cpu()))
        finally:
            model.train(was_training)
        if get_rank() == 0:
            lines = [f"sample answers at iteration {step}:"]
            for i, (item, reply) in enumerate(zip(self._prepared, answers)):
                media = f" [{item['media']}]" if item["media"] else ""
                lines.append(f"  ({i}){media} Q: {item['question']!r}\n      A: {reply!r}")
                add_text(runner.visualizer, f"{self.tag}/{i}",
                         f"**Q**{media}: {item['question']}\n\n**A**: {reply}", step)  # fmt: skip
                self.history.append({"step": step, "index": i, "media": item["media"], "question": item["question"],
                                     "answer": reply})  # fmt: skip
            print_log("\n".join(lines), "current", logging.INFO)
        return answers

    def after_train_iter(self, runner, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
        if self.interval and (runner.iter + 1) % self.interval == 0:
            self._last_step = runner.iter + 1
            self.answer(runner, self._last_step)

    def after_train(self, runner) -> None:
        if self.interval and self._last_step != runner.iter:
            self._last_step = runner.iter
            self.answer(runner, runner.iter)
