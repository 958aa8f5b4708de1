"""videoccam/checkpoint.py: checkpoints load weights-only under an allow-list; a file that would run code is refused.

The allow-list is complete for real training runs: tests/engine/test_distributed.py resumes single-process and
DeepSpeed ZeRO-2 runs through it (bit-identical losses), tests/tools/test_train.py loads stage-1 checkpoints as
``pretrained_pth``.
"""

from __future__ import annotations

import builtins
import importlib.util

import numpy as np
import pytest
import torch

from tests.conftest import Payload, write_malicious_checkpoint
from videoccam.checkpoint import (
    NoCheckpointError,
    UnsafeCheckpointError,
    is_deepspeed_checkpoint,
    load_checkpoint,
    resolve_checkpoint,
    weights_only_loading,
)


class CallsEval:
    def __reduce__(self):
        return builtins.eval, ("1 + 1",)


class ReachesPastHistoryBuffer:
    """``getattr(HistoryBuffer, "__init__")``: the getattr stand-in gives only the four statistics methods."""

    def __reduce__(self):
        from mmengine.logging import HistoryBuffer

        return builtins.getattr, (HistoryBuffer, "__init__")


@pytest.mark.parametrize(
    "payload, named",
    [
        (lambda marker: Payload(marker), "the global posix.system"),
        (lambda marker: CallsEval(), "the global eval"),
        (lambda marker: ReachesPastHistoryBuffer(), "the global builtins.getattr, as getattr("),
    ],
    ids=["os.system", "eval", "getattr"],
)
def test_a_file_that_needs_another_global_is_refused_naming_file_and_global(tmp_path, payload, named):
    marker = tmp_path / "payload_ran"
    path = tmp_path / "shared.pth"
    torch.save({"state_dict": {"w": torch.ones(2)}, "x": payload(marker)}, path)
    with pytest.raises(UnsafeCheckpointError) as error:
        load_checkpoint(path)
    message = str(error.value)
    assert str(path) in message and named in message and "could run code" in message, message
    assert isinstance(error.value, ValueError)  # the tools report ValueErrors as "error: ..."
    assert not marker.exists()


def test_weights_only_loading_overrides_weights_only_false_and_restores_torch_load(tmp_path):
    """DeepSpeed and xtuner call torch.load(weights_only=False): inside the block it is weights-only anyway."""
    marker = tmp_path / "payload_ran"
    path = write_malicious_checkpoint(tmp_path / "evil.pth", marker)
    original, safe_before = torch.load, set(torch.serialization.get_safe_globals())
    with weights_only_loading():
        with weights_only_loading():  # re-entrant
            with pytest.raises(UnsafeCheckpointError, match="posix.system"):
                torch.load(path, map_location="cpu", weights_only=False)
        with pytest.raises(UnsafeCheckpointError, match=str(path)):
            torch.load(str(path), weights_only=False, mmap=True)
    assert not marker.exists()
    assert torch.load is original  # scoped: nothing left behind
    assert set(torch.serialization.get_safe_globals()) == safe_before


def _message_hub_checkpoint() -> dict:
    """What mmengine's Runner saves besides the weights: message hub (HistoryBuffers of float and int logs), meta
    with numpy scalars, an AdamW state and a ConfigDict."""
    from mmengine.config import ConfigDict
    from mmengine.logging import MessageHub

    hub = MessageHub.get_instance("videoccam_test_checkpoint")
    for step in range(3):
        hub.update_scalar("train/loss", 1.5 / (step + 1))
        hub.update_scalar("train/iter_count", step)
    hub.update_info("iter", 3)
    param = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.AdamW([param], lr=1e-3)
    param.grad = torch.ones(3)
    optimizer.step()
    return {
        "meta": {"seed": 0, "iter": 3, "np_seed": np.int64(7), "loss": np.float32(0.5)},
        "state_dict": {"projector.w": torch.arange(4.0)},
        "message_hub": hub.state_dict(),
        "optimizer": optimizer.state_dict(),
        "ds_config": ConfigDict(train_micro_batch_size_per_gpu=2, zero_optimization=dict(stage=2)),
    }


def test_mmengine_training_state_loads_and_the_allow_list_is_scoped(tmp_path):
    from mmengine.logging import HistoryBuffer

    saved, safe_before = _message_hub_checkpoint(), set(torch.serialization.get_safe_globals())
    path = tmp_path / "iter_3.pth"
    torch.save(saved, path)
    with pytest.raises(Exception, match="Unsupported global"):  # torch alone refuses it: the allow-list is ours
        torch.load(path, weights_only=True)
    loaded = load_checkpoint(path)
    buffer = loaded["message_hub"]["log_scalars"]["train/loss"]
    assert isinstance(buffer, HistoryBuffer)
    np.testing.assert_allclose(buffer.data[0], [1.5, 0.75, 0.5])
    assert buffer.mean() == pytest.approx(2.75 / 3) and buffer.statistics("current") == pytest.approx(0.5)
    assert loaded["meta"]["np_seed"] == 7 and loaded["ds_config"].zero_optimization.stage == 2
    torch.testing.assert_close(loaded["optimizer"]["state"][0]["exp_avg"], saved["optimizer"]["state"][0]["exp_avg"])
    assert set(torch.serialization.get_safe_globals()) == safe_before  # nothing stays allowed after the load


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="DeepSpeed is not installed")
def test_deepspeed_optimizer_state_loads(tmp_path):
    """The classes of DeepSpeed's optimizer shards (ZeRO stage, loss scalers, fragment addresses) load; a fp16 run's
    DynamicLossScaler too (fp16 DeepSpeed cannot run on CPU, so its shard cannot be made here otherwise)."""
    import deepspeed  # noqa: F401 - the allow-list takes DeepSpeed's classes once deepspeed is imported
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    path = tmp_path / "zero_pp_rank_0_mp_rank_00_optim_states.pt"
    torch.save({"optimizer_state_dict": {
        "zero_stage": ZeroStageEnum.gradients, "loss_scaler": LossScaler(1.0),
        "dynamic": DynamicLossScaler(init_scale=2.0**16, scale_window=1000, min_scale=1.0, delayed_shift=2,
                                     consecutive_hysteresis=False),
        "param_slice_mappings": [{"w": fragment_address(numel=4, start=0)}]}}, path)  # fmt: skip
    with weights_only_loading():
        state = torch.load(path, map_location="cpu", weights_only=False)["optimizer_state_dict"]
    assert state["zero_stage"] is ZeroStageEnum.gradients and state["loss_scaler"].cur_scale == 1.0
    assert state["dynamic"].cur_scale == 2.0**16 and state["param_slice_mappings"][0]["w"].numel == 4


# -- resolve_checkpoint: which file or folder a path names ------------------------------------------------------


def _failed_run(work_dir, error_line: str | None = "FileNotFoundError: data file not found: /data/x.json"):
    """A work dir as a run that failed before its first save leaves it: the dumped config and a log, no checkpoint."""
    run = work_dir / "20261207_184323"
    run.mkdir(parents=True)
    (work_dir / "cfg.py").write_text("x = 1\n")
    lines = ["2026/12/07 18:43:23 - mmengine - INFO - Config:", "x = 1"]
    if error_line:
        lines += ["2026/12/07 18:43:27 - mmengine - ERROR - train.py - main - 1 - training failed:",
                  "Traceback (most recent call last):", '  File "records.py", line 109', error_line]
    (run / "20261207_184323.log").write_text("\n".join(lines) + "\n")
    return run / "20261207_184323.log"


def test_resolve_a_file_a_deepspeed_folder_and_a_work_dir(tmp_path):
    ckpt = tmp_path / "iter_4.pth"
    ckpt.write_bytes(b"x")
    deepspeed = tmp_path / "iter_8.pth"  # mmengine names DeepSpeed folders like files
    deepspeed.mkdir()
    (deepspeed / "mp_rank_00_model_states.pt").write_bytes(b"x")
    assert resolve_checkpoint(ckpt) == str(ckpt) and not is_deepspeed_checkpoint(ckpt)
    assert resolve_checkpoint(deepspeed) == str(deepspeed) and is_deepspeed_checkpoint(deepspeed)
    (tmp_path / "last_checkpoint").write_text(str(deepspeed))
    assert resolve_checkpoint(tmp_path) == str(deepspeed)
    # a work dir copied from another machine: its last_checkpoint names a path there; the file is in the work dir
    (tmp_path / "last_checkpoint").write_text("/elsewhere/work_dirs/run/iter_4.pth")
    assert resolve_checkpoint(tmp_path) == str(tmp_path / "iter_4.pth")


def test_a_failed_runs_work_dir_says_it_holds_no_checkpoint_and_where_the_log_says_why(tmp_path):
    log = _failed_run(tmp_path)
    with pytest.raises(NoCheckpointError) as error:
        resolve_checkpoint(tmp_path)
    message = str(error.value)
    assert isinstance(error.value, FileNotFoundError) and "DeepSpeed" not in message.split("holds no checkpoint")[0]
    assert f"{tmp_path} holds no checkpoint" in message and str(log) in message
    assert message.endswith("its last error: FileNotFoundError: data file not found: /data/x.json"), message


def test_a_log_without_an_error_says_so_and_how_to_get_one(tmp_path):
    _failed_run(tmp_path, error_line=None)
    with pytest.raises(NoCheckpointError, match=r"it records no error \(`xtuner train` prints .* tools/train.py"):
        resolve_checkpoint(tmp_path)


@pytest.mark.parametrize("layout, expected", [
    ({}, r"holds no checkpoint \(no last_checkpoint, no \*\.pth file, .*\) and no training log"),
    ({"iter_5.pth": b"x", "iter_10.pth": b"x"}, r"no last_checkpoint file .* it holds iter_10\.pth, iter_5\.pth: give "
                                                r"one of them"),
    ({"last_checkpoint": b"/gone/iter_3.pth"}, r"last_checkpoint names '/gone/iter_3\.pth', which does not exist"),
])  # fmt: skip
def test_other_folders_without_a_checkpoint(tmp_path, layout, expected):
    for name, content in layout.items():
        (tmp_path / name).write_bytes(content)
    with pytest.raises(NoCheckpointError, match=expected):
        resolve_checkpoint(tmp_path)
    with pytest.raises(FileNotFoundError, match="checkpoint not found: "):
        resolve_checkpoint(tmp_path / "missing.pth")


def test_every_loader_resolves_through_it(tmp_path):
    """load_pretrained (pretrained_pth), the chat / eval / demo flags and load_trained_model (convert) all say it,
    not "reading it needs deepspeed", which a folder without a checkpoint used to get."""
    from videoccam.inference.load import check_model_source, load_trained_model
    from videoccam.model.videoccam_model import VideoCCAMModel

    log = _failed_run(tmp_path / "work")
    for call in (lambda: VideoCCAMModel.load_pretrained(None, str(tmp_path / "work")),
                 lambda: check_model_source(None, str(log.parents[1] / "cfg.py"), str(tmp_path / "work")),
                 lambda: load_trained_model(str(log.parents[1] / "cfg.py"), str(tmp_path / "work"))):  # fmt: skip
        with pytest.raises(NoCheckpointError, match=f"holds no checkpoint.*{log}.*data file not found"):
            call()
