"""Start-up checks of a training run for settings that would fail, or silently train worse, far into a GPU job.

:class:`~videoccam.engine.loops.TokenMeanTrainLoop` runs :func:`run_startup_checks` before its first iteration
(after mmengine has built the model, the optimizer wrapper and DeepSpeed, and restored a ``--resume`` checkpoint):

* **checkpoints inside an optimizer step** (:func:`check_checkpoint_alignment`): a checkpoint every ``save_steps``
  iterations that is not a multiple of ``accumulative_counts`` falls inside an optimizer step. DeepSpeed does not
  restore its micro-step counter on ``--resume``, so every optimizer step after resuming from such a checkpoint
  would straddle two of the loop's token-mean windows: refused under DeepSpeed, a warning without it (mmengine's
  optimizer wrapper realigns its count; only the interrupted step's earlier micro-batches are lost);
* **resuming inside an optimizer step** under DeepSpeed (:func:`check_resume_alignment`): refused;
* **gradient accumulation in bf16/fp16** (:func:`deepspeed_accumulation_dtype`): a warning naming the project's
  JSONs (``configs/deepspeed/zero2_bf16.json``, ``zero3_bf16.json``), which accumulate in fp32; a JSON that asks
  for ``torch_autocast`` on a DeepSpeed too old to know the key (it would be ignored: fp32 matrix products) is
  refused;
* **answers the LLM's sliding window hides from the media** (:func:`check_attention_window`): with a sliding
  window ``W`` (Phi-3-mini-4k and -medium-4k: 2,047) and ``q`` visual tokens from position 0 on, a token at
  position ``W + q - 1`` or later attends to no visual token; a warning when ``max_length`` allows such positions.

Each check reads a few attributes and returns; none touches the data.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import torch
from mmengine.logging import print_log

__all__ = [
    "GPU_DEEPSPEED_JSONS",
    "attention_window",
    "check_attention_window",
    "check_checkpoint_alignment",
    "check_resume_alignment",
    "deepspeed_accumulation_dtype",
    "deepspeed_engine",
    "run_startup_checks",
]

GPU_DEEPSPEED_JSONS = "configs/deepspeed/zero2_bf16.json (or zero3_bf16.json)"
TORCH_AUTOCAST_DEEPSPEED = "deepspeed>=0.17.2"  # the first release with the "torch_autocast" config key


def _nearest_multiples(value: int, step: int) -> str:
    lower = value // step * step
    return f"{lower} or {lower + step}" if lower else f"{step}"


def check_checkpoint_alignment(interval: int | None, accumulation: int, deepspeed: bool) -> str | None:
    """Refuse (DeepSpeed) or report a checkpoint interval that is not a multiple of the accumulation count.

    Args:
        interval: iterations between checkpoints (None: no periodic checkpoint).
        accumulation: micro-batches per optimizer step (``optim_wrapper.accumulative_counts``).
        deepspeed: whether DeepSpeed runs the optimizer.

    Returns:
        a warning to log (without DeepSpeed), else None.

    Raises:
        ValueError: under DeepSpeed, naming both values and the nearest intervals that work.
    """
    if not interval or accumulation <= 1 or interval % accumulation == 0:
        return None
    problem = (
        f"checkpoints every {interval} iterations (save_steps / default_hooks.checkpoint.interval) fall inside an "
        f"optimizer step of {accumulation} micro-batches (optim_wrapper.accumulative_counts)"
    )
    fix = f"set save_steps to a multiple of {accumulation}, e.g. {_nearest_multiples(interval, accumulation)}"
    if deepspeed:
        raise ValueError(
            f"{problem}: DeepSpeed does not restore its micro-step counter on --resume, so after resuming from such "
            f"a checkpoint every optimizer step would mix micro-batches of two steps; {fix}"
        )
    return f"{problem}: a run resumed from one loses the micro-batches of that step before it; {fix}"


def check_resume_alignment(iteration: int, accumulation: int) -> None:
    """Under DeepSpeed, refuse to resume at an iteration inside an optimizer step.

    Raises:
        ValueError: naming the iteration, the accumulation count and what to do.
    """
    if iteration > 0 and accumulation > 1 and iteration % accumulation:
        raise ValueError(
            f"resuming at iteration {iteration}, inside an optimizer step of {accumulation} micro-batches "
            f"(optim_wrapper.accumulative_counts): DeepSpeed restarts its micro-step count at 0 on --resume, so "
            f"every later optimizer step would mix micro-batches of two steps. Resume from a checkpoint at a "
            f"multiple of {accumulation} iterations (save_steps a multiple of it), or train with "
            f"accumulative_counts dividing {iteration}"
        )


def deepspeed_engine(runner: Any) -> Any | None:
    """The DeepSpeed engine behind the runner's optimizer wrapper, or None without DeepSpeed."""
    deepspeed = sys.modules.get("deepspeed")
    if deepspeed is None:
        return None
    for candidate in (getattr(runner.optim_wrapper, "model", None), getattr(runner.model, "model", None)):
        if isinstance(candidate, deepspeed.DeepSpeedEngine):
            return candidate
    return None


def deepspeed_accumulation_dtype(engine: Any) -> torch.dtype:
    """The dtype DeepSpeed sums the micro-batches' gradients in.

    ``data_types.grad_accum_dtype`` of the JSON (default: the model dtype) for ZeRO-1 and ZeRO-3; ZeRO-2
    without offload accumulates in the model dtype whatever it says (measured with deepspeed 0.19.6: the
    ``grad_accum_dtype`` of a bf16 ZeRO-2 run is ignored), which is why ``configs/deepspeed/zero2_bf16.json`` keeps
    the model in fp32 and computes in bf16 under ``torch_autocast``.
    """
    model_dtype, accumulation_dtype = engine.get_data_types()
    if engine.zero_optimization_stage() == 2 and not engine.zero_cpu_offload():
        return model_dtype
    return accumulation_dtype


def _check_deepspeed(engine: Any, config: Any, accumulation: int) -> str | None:
    """Refuse an ignored ``torch_autocast`` key; returns a warning for bf16/fp16 gradient accumulation."""
    autocast = (config or {}).get("torch_autocast") if isinstance(config, dict) else None
    if isinstance(autocast, dict) and autocast.get("enabled") and not hasattr(engine, "torch_autocast_enabled"):
        import deepspeed

        raise RuntimeError(
            f"the DeepSpeed config enables torch_autocast, which deepspeed {deepspeed.__version__} does not know and "
            f"ignores (the trainable weights would compute in fp32); pip install '{TORCH_AUTOCAST_DEEPSPEED},<0.19.7'"
        )
    dtype = deepspeed_accumulation_dtype(engine)
    if accumulation > 1 and dtype in (torch.bfloat16, torch.float16):
        return (
            f"DeepSpeed sums the gradients of the {accumulation} micro-batches of each optimizer step in {dtype} "
            f"(ZeRO-{engine.zero_optimization_stage()}): small contributions are rounded away. Use "
            f"{GPU_DEEPSPEED_JSONS}, which accumulate in fp32, instead of xtuner's deepspeed_zero2 / deepspeed_zero3"
        )
    return None


def attention_window(llm_config: Any) -> int | None:
    """The LLM's sliding attention window in tokens, or None when every token attends to the whole context.

    Reads the config's ``sliding_window`` (Phi-3, Mistral, Qwen2) and ``use_sliding_window`` (Qwen2, off by
    default; with it on, the layers below ``max_window_layers`` still attend fully, so the window is an upper
    bound on what is hidden).
    """
    window = getattr(llm_config, "sliding_window", None)
    if not window or getattr(llm_config, "use_sliding_window", True) is False:
        return None
    return int(window)


def check_attention_window(llm_config: Any, max_length: int, num_visual_tokens: int) -> str | None:
    """A warning when ``max_length`` lets answer tokens lie beyond the LLM's sliding window from the media.

    With ``q`` visual tokens at positions ``p .. p + q - 1`` (``p >= 0``, the template's text before the
    placeholder), a token at position ``i`` sees the last of them only if ``i - (p + q - 1) < W``: every
    position of a sample sees a visual token when ``max_length <= W + q - 1``.

    Returns:
        the warning, or None when the window (if any) covers every position.
    """
    window = attention_window(llm_config)
    if window is None:
        return None
    limit = window + num_visual_tokens - 1
    if max_length <= limit:
        return None
    return (
        f"the LLM attends through a sliding window of {window} tokens (its config's sliding_window): with "
        f"{num_visual_tokens} visual tokens at the start of a sample, answer tokens from position {limit} on attend "
        f"to no visual token, and max_length={max_length} allows up to {max_length - limit} such positions per "
        f"sample; set max_length <= {limit} (train_dataloader.dataset.max_length) so that every answer sees its media"
    )


def _checkpoint_interval(runner: Any) -> int | None:
    from mmengine.hooks import CheckpointHook

    for hook in getattr(runner, "hooks", []):
        if isinstance(hook, CheckpointHook) and hook.interval and hook.interval > 0:
            if hook.by_epoch:
                return int(hook.interval * len(runner.train_dataloader))
            return int(hook.interval)
    return None


def run_startup_checks(runner: Any, model: Any, accumulation: int, iteration: int) -> None:
    """All checks of this module for a runner about to train (see the module docstring).

    Args:
        runner: the mmengine runner (hooks, optimizer wrapper, DeepSpeed strategy).
        model: the training model, unwrapped (``VideoCCAMModel``: its ``llm`` and ``num_visual_tokens``).
        accumulation: micro-batches per optimizer step.
        iteration: the iteration training starts at (> 0 after ``--resume``).

    Raises:
        ValueError, RuntimeError: for the refused combinations.
    """
    engine = deepspeed_engine(runner)
    warnings = [check_checkpoint_alignment(_checkpoint_interval(runner), accumulation, engine is not None)]
    if engine is not None:
        check_resume_alignment(iteration, accumulation)
        warnings.append(_check_deepspeed(engine, getattr(getattr(runner, "strategy", None), "config", None),
                                         accumulation))  # fmt: skip
    llm = getattr(model, "llm", None)
    dataset = getattr(getattr(runner, "train_dataloader", None), "dataset", None)
    max_length, queries = getattr(dataset, "max_length", None), getattr(model, "num_visual_tokens", None)
    if llm is not None and max_length and queries:
        warnings.append(check_attention_window(llm.config, int(max_length), int(queries)))
    for warning in filter(None, warnings):
        print_log(warning, "current", logging.WARNING)
