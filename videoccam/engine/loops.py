"""A training loop whose optimizer step minimises the mean loss over every answer token of that step.

With gradient accumulation and data parallelism the loss of a step is, by default, a mean of per-micro-batch
means: mmengine's ``OptimWrapper`` divides each micro-batch's loss by ``accumulative_counts``, DDP and DeepSpeed
average the gradients over the ranks, and each micro-batch's loss is already a mean over its own answer
tokens. A token of a micro-batch with few answer tokens then weighs more than a token of one with many
(samples with short answers count more). :class:`TokenMeanTrainLoop` makes the step's loss
``sum of token losses / answer tokens of all micro-batches of the step on all ranks``, as Hugging Face's
Trainer does since transformers 4.46 (``num_items_in_batch``):

1. at the first micro-batch of a step it counts the answer tokens of the step's other micro-batches without
   loading them: the sampler's next sample indices (read ahead through :class:`SampleIndexStream`, which hands
   the same indices to the DataLoader afterwards) index the dataset's ``answer_token_counts`` (trained tokens per
   sample). Where that is not possible (a dataset without the counts, a batch sampler other than torch's
   ``BatchSampler``, or a step that runs past the end of an epoch) it reads the step's batches ahead instead (the
   same batches the loop would draw next, in the same order). The count is summed over the ranks (one
   ``all_reduce`` per step);
2. it gives every micro-batch ``data["loss_divisor"] = total / (ranks x micro-batches of the step)``; the
   model returns ``sum of its token losses / loss_divisor``, so the wrapper's division by the accumulation
   count and the ranks' averaging leave exactly ``sum / total``;
3. the logged ``loss`` stays the micro-batch's own per-token mean (the value logged before this loop).

Steps follow mmengine's accumulation windows (iterations ``[k * A, (k + 1) * A)``, the last one shorter when
``max_iters`` is not a multiple of ``A``) and the loop's iteration counter, so ``--resume`` (which restores the
counter and skips the consumed batches) lines up too. DeepSpeed accumulates ``gradient_accumulation_steps``
micro-batches, which xtuner sets from ``accumulative_counts``. Before the first iteration the loop runs
:func:`videoccam.engine.startup_checks.run_startup_checks` (checkpoints and resumes inside an optimizer step,
bf16 gradient accumulation, the LLM's sliding window).

The model must take ``data["loss_divisor"]`` in ``mode="loss"`` (:class:`~videoccam.model.videoccam_model.
VideoCCAMModel` does; its ``supports_loss_divisor`` attribute says so).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
from mmengine.dist import all_reduce, get_world_size
from mmengine.logging import print_log
from mmengine.runner import IterBasedTrainLoop
from torch import nn
from torch.utils.data import BatchSampler, DataLoader

from videoccam.engine.startup_checks import run_startup_checks
from videoccam.model.hf.constants import IGNORE_INDEX

__all__ = ["SampleIndexStream", "TokenMeanTrainLoop", "count_loss_tokens", "unwrap_model"]


def count_loss_tokens(data_batch: Mapping[str, Any]) -> int:
    """Answer tokens of a collated batch whose loss the model computes (next-token targets).

    Args:
        data_batch: ``{"data": {"labels": [b, l], ...}, ...}`` as ``videoccam_collate_fn`` returns it (a batch
            whose samples were all skipped has no labels: 0).

    Returns:
        the number of positions ``labels[:, 1:] != IGNORE_INDEX``: token t is predicted from the tokens before
        it, so the first label of a row never has a loss term.
    """
    data = data_batch.get("data", data_batch)
    labels = data.get("labels") if isinstance(data, Mapping) else None
    if labels is None:
        return 0
    return int((labels[:, 1:] != IGNORE_INDEX).sum())


class SampleIndexStream:
    """A sampler wrapper whose next sample indices can be read before the DataLoader asks for them.

    Installed as the DataLoader's ``batch_sampler.sampler``: it yields exactly what the wrapped sampler yields, in
    the same order; :meth:`upcoming_batches` pulls indices from the wrapped sampler early and keeps them for the
    DataLoader. The loop reports each batch it takes (:meth:`consume`), so the stream knows which of the epoch's
    batches (``batch_size`` consecutive indices each, as torch's ``BatchSampler`` groups them) come next.
    ``set_epoch`` and ``len`` reach the wrapped sampler (mmengine sets the epoch on the DataLoader's own
    ``sampler`` attribute, which stays the wrapped sampler).

    Memory: the indices pulled but not yet consumed by the loop (at most a few optimizer steps' worth, plus the
    DataLoader's prefetch); time: O(1) per index.
    """

    def __init__(self, sampler: Any, batch_size: int, drop_last: bool) -> None:
        self.sampler, self.batch_size, self.drop_last = sampler, batch_size, drop_last
        self.generation = 0  # bumped at every new pass (epoch) over the sampler
        self.consumed_batches = 0  # batches of this pass the loop has taken
        self._iterator: Iterator[int] | None = None
        self._indices: list[int] = []  # pulled this pass, from pass position self._offset on
        self._offset = 0
        self._given = 0  # pass position of the next index for the DataLoader
        self._exhausted = False

    def __len__(self) -> int:
        return len(self.sampler)

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[int]:
        self.generation += 1
        self.consumed_batches = 0
        self._iterator, self._indices, self._offset, self._given = iter(self.sampler), [], 0, 0
        self._exhausted = False
        return self._pass(self.generation)

    def _pull(self, until: int) -> None:
        """Pull indices from the wrapped sampler until pass position ``until`` is held (or the pass ends)."""
        while not self._exhausted and self._offset + len(self._indices) < until:
            try:
                self._indices.append(next(self._iterator))
            except StopIteration:
                self._exhausted = True

    def _pass(self, generation: int) -> Iterator[int]:
        """The indices of one pass, in the wrapped sampler's order (a generator: ``BatchSampler`` may call
        ``iter`` on what it gets, which must not start a new pass)."""
        while generation == self.generation:
            self._pull(self._given + 1)
            if self._given >= self._offset + len(self._indices):
                return
            index = self._indices[self._given - self._offset]
            self._given += 1
            yield index

    def upcoming_batches(self, n: int) -> list[list[int]] | None:
        """Sample indices of the next ``n`` batches after those consumed, or None if the pass ends before them."""
        start = self.consumed_batches * self.batch_size
        end = start + n * self.batch_size
        self._pull(end)
        held = self._offset + len(self._indices)
        if held < end and (self.drop_last or held <= end - self.batch_size):
            return None  # a batch of the window belongs to the next pass (epoch)
        flat = self._indices[start - self._offset : min(end, held) - self._offset]
        return [flat[i : i + self.batch_size] for i in range(0, len(flat), self.batch_size)]

    def consume(self, generation: int) -> None:
        """The loop took a batch fetched during pass ``generation`` (batches of an earlier pass do not count)."""
        if generation != self.generation:
            return
        self.consumed_batches += 1
        done = min(self.consumed_batches * self.batch_size, self._given) - self._offset
        if done > 4096:  # drop what no look-ahead can ask for again
            del self._indices[:done]
            self._offset += done

    @classmethod
    def install(cls, dataloader: DataLoader) -> SampleIndexStream | None:
        """Wrap ``dataloader``'s sampler; None (nothing changed) unless it batches with torch's ``BatchSampler``."""
        batch_sampler = getattr(dataloader, "batch_sampler", None)
        if type(batch_sampler) is not BatchSampler:  # a custom grouping: its batches are not consecutive indices
            return None
        stream = cls(batch_sampler.sampler, batch_sampler.batch_size, batch_sampler.drop_last)
        batch_sampler.sampler = stream
        return stream


class _LookaheadIterator:
    """Wraps the loop's data iterator so that batches can be read ahead and still come out in order; reports
    every batch it hands out to the :class:`SampleIndexStream` (if any), tagged with the pass it was fetched in."""

    def __init__(self, iterator: Iterator[Any], stream: SampleIndexStream | None) -> None:
        self._iterator = iterator
        self._stream = stream
        self._buffer: deque[tuple[Any, int]] = deque()

    def __iter__(self) -> _LookaheadIterator:
        return self

    def _fetch(self) -> tuple[Any, int]:
        batch = next(self._iterator)
        return batch, (self._stream.generation if self._stream is not None else 0)

    def __next__(self) -> Any:
        batch, generation = self._buffer.popleft() if self._buffer else self._fetch()
        if self._stream is not None:
            self._stream.consume(generation)
        return batch

    def peek(self, n: int) -> list[Any]:
        """The next ``n`` batches, without consuming them."""
        while len(self._buffer) < n:
            self._buffer.append(self._fetch())
        return [batch for batch, _ in list(self._buffer)[:n]]


def unwrap_model(model: nn.Module) -> nn.Module:
    """The model inside DDP / DeepSpeed wrappers (the first one with ``supports_loss_divisor``, else the input).

    The attribute is looked up on the class: DeepSpeed's engine forwards unknown attributes to its module, so
    ``hasattr(engine, ...)`` would stop at the engine.
    """
    current: Any = model
    for _ in range(4):
        if getattr(type(current), "supports_loss_divisor", False):
            return current
        current = getattr(current, "module", None) or getattr(current, "model", None)
        if current is None:
            break
    return model


class TokenMeanTrainLoop(IterBasedTrainLoop):
    """xtuner's ``TrainLoop`` (``max_iters`` or ``max_epochs``) with the step's loss a true per-token mean.

    Args:
        runner: the mmengine runner.
        dataloader: dataloader or its config.
        max_iters: training length in iterations (micro-batches); exclusive with ``max_epochs``.
        max_epochs: training length in epochs (``max_epochs x len(dataloader)`` iterations, as xtuner's loop).
        **kwargs: passed to mmengine's ``IterBasedTrainLoop`` (``val_begin``, ``val_interval``, ...).

    Raises:
        ValueError: if neither or both of ``max_iters`` and ``max_epochs`` are given; at the first step, if the
            model does not take ``loss_divisor`` or the optimizer wrapper's accumulation count cannot be read;
            before the first step, for the combinations :func:`run_startup_checks` refuses.
    """

    def __init__(
        self,
        runner: Any,
        dataloader: Any,
        max_iters: int | None = None,
        max_epochs: int | float | None = None,
        **kwargs: Any,
    ) -> None:
        # the max_epochs conversion of xtuner 0.2.0's TrainLoop (xtuner/engine/runner/loops.py), written here
        # because importing xtuner.engine imports xtuner.dataset, which needs torchvision or the CPU patches
        if (max_iters is None) == (max_epochs is None):
            raise ValueError(f"train_cfg needs exactly one of max_iters and max_epochs, got max_iters={max_iters!r}, "
                             f"max_epochs={max_epochs!r}")  # fmt: skip
        if isinstance(dataloader, dict):  # built here (as mmengine's BaseLoop would) to wrap its sampler first
            diff_rank_seed = runner._randomness_cfg.get("diff_rank_seed", False)
            dataloader = runner.build_dataloader(dataloader, seed=runner.seed, diff_rank_seed=diff_rank_seed)
        if max_epochs is not None:
            max_iters = int(max_epochs * len(dataloader))
        counts = getattr(getattr(dataloader, "dataset", None), "answer_token_counts", None)
        # before the base class starts iterating the dataloader (its workers draw indices at once)
        self._stream = SampleIndexStream.install(dataloader) if counts is not None else None
        self._answer_token_counts = None if counts is None else np.asarray(counts)
        super().__init__(runner, dataloader, max_iters=int(max_iters), **kwargs)
        self.dataloader_iterator = _LookaheadIterator(self.dataloader_iterator, self._stream)
        self._step_end = -1  # first iteration after the current optimizer step
        self._loss_divisor = 1.0
        self._checked_model = False
        self._read_ahead_reason: str | None = None  # logged once when a step's batches had to be loaded ahead
        self._expected_local = 0  # answer tokens the counts promised for this rank's current step
        self._seen_local = 0  # answer tokens of the step's batches as they came
        self._mismatch_logged = False

    def run(self) -> Any:
        """mmengine's loop, after the start-up checks (:func:`run_startup_checks`)."""
        run_startup_checks(self.runner, unwrap_model(self.runner.model), self._micro_batches_per_step(), self._iter)
        return super().run()

    def _micro_batches_per_step(self) -> int:
        wrapper = self.runner.optim_wrapper
        counts = getattr(wrapper, "_accumulative_counts", None)
        if counts is None and getattr(wrapper, "_model", None) is not None:  # mmengine's DeepSpeedOptimWrapper
            counts = wrapper.model.gradient_accumulation_steps()
        if counts is None:
            raise ValueError(
                f"TokenMeanTrainLoop cannot read the gradient accumulation count of {type(wrapper).__name__}; "
                "use mmengine's OptimWrapper / AmpOptimWrapper or DeepSpeed, or xtuner's TrainLoop"
            )
        return int(counts)

    def _answer_tokens_ahead(self, n: int) -> int:
        """Answer tokens of the next ``n`` batches on this rank: from the dataset's counts, or by loading them."""
        if n <= 0:
            return 0
        batches = self._stream.upcoming_batches(n) if self._stream is not None else None
        if batches is not None:
            return int(self._answer_token_counts[np.concatenate(batches)].sum())
        reason = ("the step runs past the end of an epoch" if self._stream is not None else
                  "the dataset has no answer_token_counts or the DataLoader batches with another batch sampler")
        if self._read_ahead_reason != reason:
            self._read_ahead_reason = reason
            print_log(f"TokenMeanTrainLoop: {reason}; loading the step's next {n} batches ahead to count their "
                      "answer tokens", "current")  # fmt: skip
        return sum(count_loss_tokens(b) for b in self.dataloader_iterator.peek(n))

    def _start_step(self, first_batch: Any) -> None:
        """Count the answer tokens of the step starting at ``first_batch`` and set the loss divisor."""
        if not self._checked_model:
            model = unwrap_model(self.runner.model)
            if not getattr(model, "supports_loss_divisor", False):
                raise ValueError(
                    f"TokenMeanTrainLoop needs a model whose loss takes data['loss_divisor']; "
                    f"{type(model).__name__} does not (use xtuner's TrainLoop for it)"
                )
            self._checked_model = True
        self._check_counts()
        per_step = self._micro_batches_per_step()
        window_start = self._iter // per_step * per_step  # mmengine's accumulation windows
        window_end = min(window_start + per_step, self._max_iters)
        local = count_loss_tokens(first_batch) + self._answer_tokens_ahead(window_end - self._iter - 1)
        self._expected_local, self._seen_local = local, 0
        tokens = torch.tensor(float(local), dtype=torch.float64)
        all_reduce(tokens, op="sum")  # no-op in a single process
        # the wrapper divides each micro-batch's loss by the window's length (the remainder for the last,
        # shorter window), DDP / DeepSpeed average over the ranks: that product cancels here
        self._loss_divisor = max(float(tokens), 1.0) / (get_world_size() * (window_end - window_start))
        self._step_end = window_end

    def _check_counts(self) -> None:
        """After a step: log once if its batches held other answer-token counts than the dataset promised."""
        if self._step_end < 0 or self._seen_local == self._expected_local or self._mismatch_logged:
            return
        self._mismatch_logged = True
        print_log(
            f"TokenMeanTrainLoop: the batches of the step ending at iteration {self._step_end} held "
            f"{self._seen_local} answer tokens on this rank, the dataset's answer_token_counts said "
            f"{self._expected_local} (samples skipped at load time?); that step's loss was scaled by their ratio",
            "current", logging.WARNING,
        )  # fmt: skip

    def run_iter(self, data_batch: Any) -> None:
        """One micro-batch: ``IterBasedTrainLoop.run_iter`` with the loss divisor passed to the model."""
        if self._iter >= self._step_end:
            self._start_step(data_batch)
        self.runner.call_hook("before_train_iter", batch_idx=self._iter, data_batch=data_batch)
        data_batch["data"]["loss_divisor"] = self._loss_divisor  # a Python float: no cast to bf16 under DeepSpeed
        outputs = self.runner.model.train_step(data_batch, optim_wrapper=self.runner.optim_wrapper)
        local = count_loss_tokens(data_batch)
        self._seen_local += local
        if outputs is not None and "loss" in outputs and local:
            # log this micro-batch's mean over its own answer tokens, not its share of the step's sum
            outputs["loss"] = outputs["loss"].detach() * (self._loss_divisor / local)
        self.runner.call_hook("after_train_iter", batch_idx=self._iter, data_batch=data_batch, outputs=outputs)
        self._iter += 1
