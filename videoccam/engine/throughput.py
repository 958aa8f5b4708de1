"""ThroughputHook: samples/s, tokens/s, frames/s, the share of time spent waiting on data, and TFLOP/s per device.

Logged every iteration into mmengine's message hub (so the ``LoggerHook`` prints them, smoothed over its
interval, and the visualizer writes them to ``scalars.json`` / TensorBoard):

* ``samples_per_s``, ``tokens_per_s``, ``frames_per_s``: what all devices together processed per second
  (``tokens``: LLM tokens, each image or video counted as its ``num_queries`` visual tokens, padding excluded;
  ``frames``: images and video frames through the vision tower);
* ``data_wait``: the share of the iteration time spent waiting for the batch (mmengine's ``data_time`` over
  ``time``, averaged over the ranks); close to 1 means the GPUs starve, raise ``dataloader_num_workers``;
* ``tflops_per_device``: model FLOPs of the step (SigLIP + CCAM projector + LLM, forward and backward, counted by
  :class:`~videoccam.model.flops.StepFlopCounter`; xtuner's ``ThroughputHook`` counts the LLM only) per device
  per second, averaged over the devices.

Ranks differ in their batches, so each rank counts its own and the counts are summed with one ``all_reduce`` of
six numbers per iteration (nothing in a single process). Rates divide by the ranks' mean iteration time
(``IterTimerHook``'s ``time``). With gradient accumulation under ``TokenMeanTrainLoop`` the batches of a step are
read ahead at its first micro-batch, so that wait counts as compute, not as ``data_wait``.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from mmengine.dist import all_reduce, get_world_size
from mmengine.hooks import Hook
from mmengine.logging import print_log

from videoccam.engine.loops import count_loss_tokens, unwrap_model
from videoccam.model.flops import StepFlopCounter
from videoccam.model.hf.constants import IMAGE_TOKEN_INDEX

__all__ = ["ThroughputHook", "batch_counts"]


def batch_counts(data: dict[str, Any], num_queries: int) -> dict[str, Any]:
    """What a collated batch holds: samples, LLM lengths per sample, frames per media item, answer tokens.

    Args:
        data: ``data_batch["data"]`` as ``videoccam_collate_fn`` returns it.
        num_queries: visual tokens per image or video.

    Returns:
        ``{"samples", "lengths" (list, visual tokens included, padding excluded), "num_frames" (list),
        "answer_tokens"}``; a batch whose samples were all skipped counts zero everywhere.
    """
    input_ids = data.get("input_ids")
    if input_ids is None:
        return {"samples": 0, "lengths": [], "num_frames": [], "answer_tokens": 0}
    mask = data.get("attention_mask")
    mask = torch.ones_like(input_ids, dtype=torch.bool) if mask is None else mask.bool()
    media = ((input_ids == IMAGE_TOKEN_INDEX) & mask).sum(dim=1)  # [b]
    lengths = (mask.sum(dim=1) + media * (num_queries - 1)).tolist()
    return {
        "samples": int(input_ids.shape[0]),
        "lengths": [int(n) for n in lengths],
        "num_frames": [int(t) for t in data.get("num_frames") or []],
        "answer_tokens": count_loss_tokens(data),
    }


class ThroughputHook(Hook):
    """Logs throughput and TFLOP/s per device (module docstring).

    Runs after ``IterTimerHook`` (priority 50) has stored the iteration time and before ``LoggerHook`` (60)
    prints it.
    """

    priority = 55

    def __init__(self) -> None:
        self._counter: StepFlopCounter | None = None
        self._num_queries = 0

    def before_train(self, runner) -> None:
        model = unwrap_model(runner.model)
        self._counter = StepFlopCounter(model)
        self._num_queries = getattr(model, "num_visual_tokens", None) or 0
        if not self._num_queries:
            print_log(f"ThroughputHook: the visual tokens per item of {type(model.projector).__name__} are unknown; "
                      "tokens/s counts text tokens only", "current", logging.WARNING)  # fmt: skip
        if self._counter.projector_cfg is None:
            print_log(f"ThroughputHook: FLOPs of {type(model.projector).__name__} (not a CCAMProjector) are not "
                      "counted; TFLOP/s covers SigLIP and the LLM", "current", logging.WARNING)  # fmt: skip

    def step_flops(self, data: dict[str, Any]) -> tuple[dict[str, Any], float]:
        """(batch counts, model FLOPs of the step) of one collated batch."""
        counts = batch_counts(data, self._num_queries)
        if counts["samples"] == 0:
            return counts, 0.0
        return counts, self._counter(counts["num_frames"], counts["lengths"], counts["answer_tokens"]).total

    def after_train_iter(self, runner, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
        if self._counter is None or not isinstance(data_batch, dict):
            return
        hub = runner.message_hub
        time = hub.get_scalar("train/time").current()
        data_time = hub.get_scalar("train/data_time").current()
        counts, flops = self.step_flops(data_batch.get("data") or {})
        totals = torch.tensor([counts["samples"], sum(counts["lengths"]), sum(counts["num_frames"]), flops,
                               time, data_time], dtype=torch.float64)  # fmt: skip
        world = get_world_size()
        if world > 1:
            all_reduce(totals, op="sum")
        samples, tokens, frames, flops, time, data_time = totals.tolist()
        time, data_time = time / world, data_time / world  # the ranks' means
        if time <= 0:
            return
        hub.update_scalar("train/samples_per_s", samples / time)
        hub.update_scalar("train/tokens_per_s", tokens / time)
        hub.update_scalar("train/frames_per_s", frames / time)
        hub.update_scalar("train/data_wait", data_time / time)
        hub.update_scalar("train/tflops_per_device", flops / world / time / 1e12)
