"""videoccam/engine/startup_checks.py: refused and reported settings, checked before the first iteration.

DeepSpeed's engine is stood in for by objects with the methods the checks call (``get_data_types``,
``zero_optimization_stage``, ``zero_cpu_offload``); what the real engine returns for the project's JSONs is
checked in tests/configs/test_configs.py (one process, gloo). The loop-level tests run ``TokenMeanTrainLoop.run``
with a stand-in runner, as tests/engine/test_loops.py does.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from transformers import LlamaConfig, Phi3Config, Qwen2Config

from videoccam.engine import startup_checks
from videoccam.engine.startup_checks import (
    attention_window,
    check_attention_window,
    check_checkpoint_alignment,
    check_resume_alignment,
    deepspeed_accumulation_dtype,
)


def test_checkpoints_inside_an_optimizer_step_are_refused_under_deepspeed():
    with pytest.raises(ValueError, match=r"every 500 iterations .* 16 micro-batches .* e\.g\. 496 or 512"):
        check_checkpoint_alignment(500, 16, deepspeed=True)
    warning = check_checkpoint_alignment(500, 16, deepspeed=False)  # mmengine's wrapper realigns: a warning
    assert warning and "496 or 512" in warning
    assert check_checkpoint_alignment(512, 16, deepspeed=True) is None
    assert check_checkpoint_alignment(500, 1, deepspeed=True) is None
    assert check_checkpoint_alignment(None, 16, deepspeed=True) is None


def test_resuming_inside_an_optimizer_step_is_refused():
    with pytest.raises(ValueError, match="resuming at iteration 500, inside an optimizer step of 16"):
        check_resume_alignment(500, 16)
    check_resume_alignment(512, 16)
    check_resume_alignment(0, 16)
    check_resume_alignment(7, 1)


def _engine(stage: int, model: torch.dtype, accumulation: torch.dtype, offload: bool = False, autocast: bool = True):
    engine = SimpleNamespace(get_data_types=lambda: (model, accumulation), zero_optimization_stage=lambda: stage,
                             zero_cpu_offload=lambda: offload)  # fmt: skip
    if autocast:  # DeepSpeed >= 0.17.2 knows torch_autocast
        engine.torch_autocast_enabled = lambda: False
    return engine


def test_accumulation_dtype_zero2_ignores_grad_accum_dtype():
    bf16, fp32 = torch.bfloat16, torch.float32
    assert deepspeed_accumulation_dtype(_engine(2, bf16, fp32)) == bf16  # measured: ZeRO-2 sums in the model dtype
    assert deepspeed_accumulation_dtype(_engine(2, fp32, fp32)) == fp32  # zero2_bf16.json: fp32 weights, autocast
    assert deepspeed_accumulation_dtype(_engine(3, bf16, fp32)) == fp32  # zero3_bf16.json
    assert deepspeed_accumulation_dtype(_engine(2, bf16, fp32, offload=True)) == fp32
    warning = startup_checks._check_deepspeed(_engine(2, bf16, bf16), {}, accumulation=8)
    assert "configs/deepspeed/zero2_bf16.json" in warning and "8 micro-batches" in warning
    assert startup_checks._check_deepspeed(_engine(2, bf16, bf16), {}, accumulation=1) is None
    assert startup_checks._check_deepspeed(_engine(3, bf16, fp32), {}, accumulation=8) is None


def test_torch_autocast_on_a_deepspeed_that_ignores_it_is_refused():
    pytest.importorskip("deepspeed")
    config = {"torch_autocast": {"enabled": True, "dtype": "bfloat16"}}
    with pytest.raises(RuntimeError, match=r"torch_autocast.*deepspeed>=0\.17\.2"):
        startup_checks._check_deepspeed(_engine(2, torch.float32, torch.float32, autocast=False), config, 8)
    assert startup_checks._check_deepspeed(_engine(2, torch.float32, torch.float32), config, 8) is None


def test_sliding_window_hides_late_answers_from_the_media():
    phi3_mini_4k = Phi3Config(sliding_window=2047)
    assert attention_window(phi3_mini_4k) == 2047
    warning = check_attention_window(phi3_mini_4k, max_length=4096, num_visual_tokens=1024)
    assert "from position 3070 on attend to no visual token" in warning and "max_length <= 3070" in warning
    assert check_attention_window(phi3_mini_4k, max_length=3070, num_visual_tokens=1024) is None
    # Qwen2's window is off unless use_sliding_window; Llama (Yi) has none
    assert attention_window(Qwen2Config(sliding_window=4096, use_sliding_window=False)) is None
    assert attention_window(Qwen2Config(sliding_window=4096, use_sliding_window=True)) == 4096
    assert attention_window(LlamaConfig()) is None


# ----------------------------------------------------------------------------------------------------------------
# through the loop: the checks run before the first iteration
# ----------------------------------------------------------------------------------------------------------------
class _Runner:
    def __init__(self, hooks: list, accumulation: int) -> None:
        from mmengine.optim import OptimWrapper

        param = torch.nn.Parameter(torch.zeros(1))
        self.model = torch.nn.Module()  # what the checks read of VideoCCAMModel: llm.config, num_visual_tokens
        self.model.llm = SimpleNamespace(config=Phi3Config(sliding_window=2047))
        self.model.num_visual_tokens = 1024
        self.optim_wrapper = OptimWrapper(torch.optim.SGD([param], lr=1.0), accumulative_counts=accumulation)
        self.hooks, self.val_loop = hooks, None
        self.train_dataloader = SimpleNamespace(dataset=SimpleNamespace(max_length=4096))
        self.batches = 0

    def call_hook(self, name: str, **kwargs) -> None:
        pass


def _loop(runner: _Runner, first_iter: int):
    from torch.utils.data import DataLoader

    from tests.engine.test_loops import configured_loop

    def count(batch):
        runner.batches += 1
        return batch

    loop = configured_loop()(runner, DataLoader([0] * 8, batch_size=None, collate_fn=count), max_iters=8)
    loop._iter = first_iter  # what mmengine's resume restores
    return loop


@pytest.mark.parametrize("case", ["resume", "checkpoints"])
def test_the_loop_refuses_before_its_first_iteration_under_deepspeed(monkeypatch, case):
    from mmengine.hooks import CheckpointHook

    engine = _engine(3, torch.bfloat16, torch.float32)
    monkeypatch.setattr(startup_checks, "deepspeed_engine", lambda runner: engine)  # stands in for DeepSpeed
    if case == "resume":
        runner, first_iter = _Runner([CheckpointHook(interval=4, by_epoch=False)], accumulation=4), 6
    else:
        runner, first_iter = _Runner([CheckpointHook(interval=6, by_epoch=False)], accumulation=4), 0
    loop = _loop(runner, first_iter)
    with pytest.raises(ValueError, match="resuming at iteration 6" if case == "resume" else "every 6 iterations"):
        loop.run()
    assert runner.batches == 0


def test_the_loop_reports_the_sliding_window_and_trains_on(monkeypatch, capsys):
    from mmengine.hooks import CheckpointHook

    monkeypatch.setattr(startup_checks, "deepspeed_engine", lambda runner: None)
    runner = _Runner([CheckpointHook(interval=6, by_epoch=False)], accumulation=4)
    warnings = []
    monkeypatch.setattr(startup_checks, "print_log", lambda msg, *args: warnings.append(msg))
    loop = _loop(runner, 0)
    with pytest.raises(ValueError, match="needs a model whose loss takes"):  # the stand-in model cannot train
        loop.run()
    assert any("sliding window of 2047" in w for w in warnings)
    assert any("every 6 iterations" in w for w in warnings)  # without DeepSpeed: reported, not refused
