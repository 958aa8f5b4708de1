"""A training loop whose optimizer step minimises the mean loss over every answer token of that step.

With gradient accumulation and data parallelism the loss of a step is, by default, a mean of per-micro-batch
means: mmengine's ``OptimWrapper`` divides each micro-batch's loss by ``accumulative_counts``, DDP and DeepSpeed
average the gradients over the ranks, and each micro-batch's loss is already a mean over its own answer
tokens. A token of a micro-batch with few answer tokens then weighs more than a token of one with many
(samples with short answers count more). :class:`TokenMeanTrainLoop` makes the step's loss
``sum of token losses / answer tokens of all micro-batches of the step on all ranks``, as Hugging Face's
Trainer does since transformers 4.46 (``num_items_in_batch``):

1. at the first micro-batch of a step it reads ahead the step's other micro-batches (the same batches the
   loop would draw next, in the same order), counts their answer tokens and sums the count over the ranks
   (one ``all_reduce`` per step);
2. it gives every micro-batch ``data["loss_divisor"] = total / (ranks x micro-batches of the step)``; the
   model returns ``sum of its token losses / loss_divisor``, so the wrapper's division by the accumulation
   count and the ranks' averaging leave exactly ``sum / total``;
3. the logged ``loss`` stays the micro-batch's own per-token mean (the value logged before this loop).

Steps follow mmengine's accumulation windows (iterations ``[k * A, (k + 1) * A)``, the last one shorter when
``max_iters`` is not a multiple of ``A``) and the loop's iteration counter, so ``--resume`` (which restores the
counter and skips the consumed batches) lines up too. DeepSpeed accumulates ``gradient_accumulation_steps``
micro-batches, which xtuner sets from ``accumulative_counts``.

The model must take ``data["loss_divisor"]`` in ``mode="loss"`` (:class:`~videoccam.model.videoccam_model.
VideoCCAMModel` does; its ``supports_loss_divisor`` attribute says so).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from mmengine.dist import all_reduce, get_world_size
from torch import nn
from mmengine.runner import IterBasedTrainLoop

from videoccam.model.hf.constants import IGNORE_INDEX

__all__ = ["TokenMeanTrainLoop", "count_loss_tokens", "unwrap_model"]


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


class _LookaheadIterator:
    """Wraps the loop's data iterator so that batches can be read ahead and still come out in order."""

    def __init__(self, iterator: Iterator[Any]) -> None:
        self._iterator = iterator
        self._buffer: deque[Any] = deque()

    def __iter__(self) -> _LookaheadIterator:
        return self

    def __next__(self) -> Any:
        return self._buffer.popleft() if self._buffer else next(self._iterator)

    def peek(self, n: int) -> list[Any]:
        """The next ``n`` batches, without consuming them."""
        while len(self._buffer) < n:
            self._buffer.append(next(self._iterator))
        return list(self._buffer)[:n]


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
            model does not take ``loss_divisor`` or the optimizer wrapper's accumulation count cannot be read.
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
        if max_epochs is not None:
            if isinstance(dataloader, dict):
                diff_rank_seed = runner._randomness_cfg.get("diff_rank_seed", False)
                dataloader = runner.build_dataloader(dataloader, seed=runner.seed, diff_rank_seed=diff_rank_seed)
            max_iters = int(max_epochs * len(dataloader))
        super().__init__(runner, dataloader, max_iters=int(max_iters), **kwargs)
        self.dataloader_iterator = _LookaheadIterator(self.dataloader_iterator)
        self._step_end = -1  # first iteration after the current optimizer step
        self._loss_divisor = 1.0
        self._checked_model = False

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

    def _start_step(self, first_batch: Any) -> None:
        """Read ahead the micro-batches of the step starting at ``first_batch`` and set the loss divisor."""
        if not self._checked_model:
            model = unwrap_model(self.runner.model)
            if not getattr(model, "supports_loss_divisor", False):
                raise ValueError(
                    f"TokenMeanTrainLoop needs a model whose loss takes data['loss_divisor']; "
                    f"{type(model).__name__} does not (use xtuner's TrainLoop for it)"
                )
            self._checked_model = True
        per_step = self._micro_batches_per_step()
        window_start = self._iter // per_step * per_step  # mmengine's accumulation windows
        window_end = min(window_start + per_step, self._max_iters)
        ahead = self.dataloader_iterator.peek(window_end - self._iter - 1)
        tokens = torch.tensor(float(sum(count_loss_tokens(b) for b in [first_batch, *ahead])), dtype=torch.float64)
        all_reduce(tokens, op="sum")  # no-op in a single process
        # the wrapper divides each micro-batch's loss by the window's length (the remainder for the last,
        # shorter window), DDP / DeepSpeed average over the ranks: that product cancels here
        self._loss_divisor = max(float(tokens), 1.0) / (get_world_size() * (window_end - window_start))
        self._step_end = window_end

    def run_iter(self, data_batch: Any) -> None:
        """One micro-batch: ``IterBasedTrainLoop.run_iter`` with the loss divisor passed to the model."""
        if self._iter >= self._step_end:
            self._start_step(data_batch)
        self.runner.call_hook("before_train_iter", batch_idx=self._iter, data_batch=data_batch)
        data_batch["data"]["loss_divisor"] = self._loss_divisor  # a Python float: no cast to bf16 under DeepSpeed
        outputs = self.runner.model.train_step(data_batch, optim_wrapper=self.runner.optim_wrapper)
        local = count_loss_tokens(data_batch)
        if outputs is not None and "loss" in outputs and local:
            # log this micro-batch's mean over its own answer tokens, not its share of the step's sum
            outputs["loss"] = outputs["loss"].detach() * (self._loss_divisor / local)
        self.runner.call_hook("after_train_iter", batch_idx=self._iter, data_batch=data_batch, outputs=outputs)
        self._iter += 1
