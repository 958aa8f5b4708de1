"""TokenMeanTrainLoop: the loss of an optimizer step is the mean over all its answer tokens (issue 9).

The loop runs here as mmengine's Runner runs it (``loop.run()`` with the runner's model, optimizer wrapper and
hooks), with a stand-in runner that holds a tiny ``VideoCCAMModel``, a real mmengine ``OptimWrapper`` (SGD,
lr 1, so a parameter's change is minus its gradient) and records what the hooks would log. The loop under test
is the one the training configs use (``train_cfg.type``), so the test checks what ``xtuner train`` runs.
"""

from __future__ import annotations

import copy
import os
import socket
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp
from mmengine.config import Config
from torch.utils.data import DataLoader
from transformers import AutoModelForCausalLM, SiglipVisionModel

from tests.conftest import ROOT
from videoccam.model.hf.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX

PROJECTOR = dict(num_queries=8, hidden_size=32, num_heads=4, intermediate_size=64, dropout=0.0,
                 attention_dropout=0.0)
CONFIGS = [ROOT / "configs/tiny/videoccam_tiny_qwen2_stage2.py", ROOT / "configs/_base_/videoccam_stage1.py"]


def configured_loop() -> type:
    """The train loop class of the training configs (the tiny recipe and the real recipes' base agree)."""
    from videoccam import xtuner_compat

    xtuner_compat.install()
    loops = {Config.fromfile(str(path)).train_cfg.type for path in CONFIGS}
    assert len(loops) == 1, loops
    return loops.pop()


def build_model(tiny_models) -> Any:
    from videoccam.model.videoccam_model import VideoCCAMModel

    torch.manual_seed(0)
    return VideoCCAMModel(
        llm=AutoModelForCausalLM.from_pretrained(tiny_models / "qwen2"),
        visual_encoder=SiglipVisionModel.from_pretrained(tiny_models / "siglip"),
        projector=dict(PROJECTOR),
        use_activation_checkpointing=False,
    )


def sample(seed: int, answer_len: int, frames: int | None) -> dict[str, Any]:
    """One sample: a prompt of 5 tokens (+ a media placeholder), then ``answer_len`` supervised tokens."""
    g = torch.Generator().manual_seed(seed)
    prompt = torch.randint(5, 50, (5,), generator=g).tolist()
    if frames is not None:
        prompt = prompt[:2] + [IMAGE_TOKEN_INDEX] + prompt[2:]
    answer = torch.randint(5, 50, (answer_len,), generator=g).tolist()
    pixels = None if frames is None else torch.randn(frames, 3, 64, 64, generator=g)
    return {"ids": prompt + answer, "labels": [IGNORE_INDEX] * len(prompt) + answer, "pixels": pixels}


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Right-padded batch in ``videoccam_collate_fn``'s layout."""
    length = max(len(s["ids"]) for s in samples)
    input_ids = torch.zeros(len(samples), length, dtype=torch.long)
    labels = torch.full((len(samples), length), IGNORE_INDEX)
    mask = torch.zeros(len(samples), length, dtype=torch.long)
    for row, s in enumerate(samples):
        input_ids[row, : len(s["ids"])] = torch.tensor(s["ids"])
        labels[row, : len(s["ids"])] = torch.tensor(s["labels"])
        mask[row, : len(s["ids"])] = 1
    pixels = [s["pixels"] for s in samples if s["pixels"] is not None]
    data = {"input_ids": input_ids, "attention_mask": mask, "labels": labels,
            "pixel_values": torch.cat(pixels) if pixels else None, "num_frames": [p.shape[0] for p in pixels]}
    return {"data": data, "data_samples": None}


# micro-batches with very different answer lengths: 2 answer tokens (+1 for a short text) against 3 x 14
SHORT = [sample(1, 2, frames=1), sample(2, 3, frames=None)]
LONG = [sample(3, 14, frames=3), sample(4, 14, frames=None), sample(5, 14, frames=2)]
THIRD = [sample(6, 4, frames=1)]


class StandInRunner:
    """What the loop uses of mmengine's Runner: model, optimizer wrapper, hooks (recording the logged loss)."""

    def __init__(self, model: Any, optim_wrapper: Any) -> None:
        self.model, self.optim_wrapper, self.val_loop = model, optim_wrapper, None
        self.logged: list[float] = []

    def call_hook(self, name: str, **kwargs: Any) -> None:
        if name == "after_train_iter":
            self.logged.append(float(kwargs["outputs"]["loss"]))


def _identity(batch: Any) -> Any:
    return batch


def train(model: Any, loop_type: type, batches: list[dict[str, Any]], accumulation: int) -> StandInRunner:
    """Run ``loop_type`` over ``batches`` (one per iteration) with SGD lr 1 and ``accumulation``."""
    from mmengine.optim import OptimWrapper

    params = [p for p in model.parameters() if p.requires_grad]
    wrapper = OptimWrapper(torch.optim.SGD(params, lr=1.0), accumulative_counts=accumulation)
    runner = StandInRunner(model, wrapper)
    loader = DataLoader(copy.deepcopy(batches), batch_size=None, collate_fn=_identity)
    loop = loop_type(runner, loader, max_iters=len(batches))
    wrapper.initialize_count_status(model, 0, len(batches))  # what Runner.train() does before loop.run()
    loop.run()
    return runner


def trainable(model: Any) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def assert_same_update(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor], init: dict[str, torch.Tensor],
                       rtol: float = 1e-4) -> None:
    diff = sum(float((got[k] - want[k]).double().norm()) ** 2 for k in want) ** 0.5
    update = sum(float((want[k] - init[k]).double().norm()) ** 2 for k in want) ** 0.5
    assert update > 0
    assert diff <= rtol * update, f"updates differ by {diff:.3g} ({diff / update:.2%} of the update norm)"


def test_accumulated_micro_batches_give_the_gradient_of_one_batch_holding_both(tiny_models):
    """Accumulation 2 over a 3-token and a 42-token micro-batch == one step on the 5-sample batch (SGD lr 1, so
    the change of every weight is its gradient); with a third micro-batch the last, shorter accumulation window
    is its own per-token mean. The logged loss is each micro-batch's own per-token mean."""
    loop_type = configured_loop()
    init_model = build_model(tiny_models)
    init = trainable(init_model)

    reference = build_model(tiny_models)
    plain = train(reference, loop_type, [collate(SHORT + LONG), collate(THIRD)], accumulation=1)
    accumulated = build_model(tiny_models)
    runner = train(accumulated, loop_type, [collate(SHORT), collate(LONG), collate(THIRD)], accumulation=2)
    assert_same_update(trainable(accumulated), trainable(reference), init)

    # the logged loss of a micro-batch is its own mean over its answer tokens, as without the loop
    from videoccam.model.videoccam_model import VideoCCAMModel

    assert isinstance(init_model, VideoCCAMModel)
    init_model.train()
    with torch.no_grad():
        first = float(init_model(collate(SHORT)["data"], mode="loss")["loss"])
    assert runner.logged[0] == pytest.approx(first, rel=1e-5)
    assert plain.logged[0] > 0 and len(runner.logged) == 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, port: int, tiny_models: str, out: str) -> None:
    import torch.distributed as dist
    from mmengine.model import MMDistributedDataParallel

    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        from pathlib import Path

        model = build_model(Path(tiny_models))
        ddp = MMDistributedDataParallel(module=model, device_ids=None)
        # rank 0 gets the short answers, rank 1 the long ones: 2 micro-batches each, accumulation 2
        mine = [collate(SHORT[:1]), collate(SHORT[1:])] if rank == 0 else [collate(LONG[:1]), collate(LONG[1:])]
        train_on(ddp, model, mine)
        if rank == 0:
            torch.save(trainable(model), out)
    finally:
        dist.destroy_process_group()


def train_on(wrapped: Any, model: Any, batches: list[dict[str, Any]]) -> None:
    from mmengine.optim import OptimWrapper

    params = [p for p in model.parameters() if p.requires_grad]
    wrapper = OptimWrapper(torch.optim.SGD(params, lr=1.0), accumulative_counts=2)
    runner = StandInRunner(wrapped, wrapper)
    loader = DataLoader(copy.deepcopy(batches), batch_size=None, collate_fn=_identity)
    loop = configured_loop()(runner, loader, max_iters=len(batches))
    wrapper.initialize_count_status(wrapped, 0, len(batches))
    loop.run()


@pytest.mark.slow
def test_two_ddp_ranks_with_accumulation_equal_one_batch_of_all_samples(tiny_models, tmp_path):
    """2 gloo ranks x 2 accumulated micro-batches (rank 0: 5 answer tokens, rank 1: 42) == one step on all 5
    samples in one batch: DDP's average over ranks and the accumulation both cancel."""
    out = tmp_path / "ddp_weights.pt"
    mp.start_processes(_ddp_worker, args=(_free_port(), str(tiny_models), str(out)), nprocs=2,
                       start_method="spawn")
    init = trainable(build_model(tiny_models))
    reference = build_model(tiny_models)
    train(reference, configured_loop(), [collate(SHORT + LONG)], accumulation=1)
    assert_same_update(torch.load(out, weights_only=True), trainable(reference), init)


class StoppingRunner(StandInRunner):
    """Stops the loop after ``stop_after`` iterations, as a run killed right after a checkpoint."""

    def __init__(self, model: Any, optim_wrapper: Any, stop_after: int) -> None:
        super().__init__(model, optim_wrapper)
        self.stop_after, self.loop = stop_after, None

    def call_hook(self, name: str, **kwargs: Any) -> None:
        super().call_hook(name, **kwargs)
        if name == "after_train_iter" and kwargs["batch_idx"] + 1 == self.stop_after:
            self.loop.stop_training = True


def test_resume_at_a_step_boundary_continues_as_the_uninterrupted_run(tiny_models):
    """Accumulation 2 over 6 micro-batches, stopped after iteration 4 and resumed the way mmengine resumes (the
    loop's iteration counter restored, the first 4 batches skipped) ends with the weights of the run that was
    not interrupted: the read-ahead does not shift the data or the accumulation windows."""
    from mmengine.optim import OptimWrapper

    batches = [collate(SHORT[:1]), collate(LONG[:1]), collate(SHORT[1:]), collate(LONG[1:]), collate(THIRD),
               collate(SHORT + THIRD)]
    full = build_model(tiny_models)
    train(full, configured_loop(), batches, accumulation=2)

    def start(model: Any, runner_type: Any, first_iter: int, **kwargs: Any) -> Any:
        params = [p for p in model.parameters() if p.requires_grad]
        wrapper = OptimWrapper(torch.optim.SGD(params, lr=1.0), accumulative_counts=2)
        runner = runner_type(model, wrapper, **kwargs)
        loop = configured_loop()(runner, DataLoader(copy.deepcopy(batches), batch_size=None, collate_fn=_identity),
                                 max_iters=len(batches))
        loop._iter = first_iter  # what mmengine's resume restores from the checkpoint's message hub
        wrapper.initialize_count_status(model, first_iter, len(batches))
        return runner, loop

    killed = build_model(tiny_models)
    runner, loop = start(killed, StoppingRunner, 0, stop_after=4)
    runner.loop = loop
    loop.run()
    assert len(runner.logged) == 4
    resumed = build_model(tiny_models)
    resumed.load_state_dict(killed.state_dict(), strict=False)  # the checkpoint's trainable weights
    runner, loop = start(resumed, StandInRunner, 4)
    loop.run()
    assert len(runner.logged) == 2
    for name, weight in trainable(full).items():
        torch.testing.assert_close(trainable(resumed)[name], weight, rtol=1e-5, atol=1e-6)


class CountingDataset(torch.utils.data.Dataset):
    """Per-sample items (loading one is counted), with the dataset's ``answer_token_counts`` unless ``counts=False``."""

    def __init__(self, samples: list[dict[str, Any]], counts: bool) -> None:
        self.samples, self.loads = samples, 0
        if counts:
            import numpy as np

            self.answer_token_counts = np.array([sum(x != IGNORE_INDEX for x in s["labels"]) for s in samples])

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict[str, Any]:
        self.loads += 1
        return self.samples[i]


def train_per_sample(tiny_models, counts: bool, accumulation: int, iters: int) -> tuple[Any, CountingDataset, list]:
    """12 samples of 1-14 answer tokens, batches of 2, shuffled by mmengine's sampler, ``iters`` iterations (2
    epochs for 12: the step of iterations 4-7 spans the epoch boundary). Returns the model, the dataset and the
    number of samples loaded when each micro-batch reached the model."""
    from mmengine.dataset import DefaultSampler
    from mmengine.optim import OptimWrapper

    samples = [sample(10 + i, 1 + (7 * i) % 14, frames=(i % 3) or None) for i in range(12)]
    dataset = CountingDataset(samples, counts)
    loader = DataLoader(dataset, batch_size=2, sampler=DefaultSampler(dataset, shuffle=True, seed=0),
                        collate_fn=collate)  # fmt: skip
    model = build_model(tiny_models)
    loads: list[int] = []
    model.register_forward_pre_hook(lambda module, args: loads.append(dataset.loads))
    params = [p for p in model.parameters() if p.requires_grad]
    wrapper = OptimWrapper(torch.optim.SGD(params, lr=1.0), accumulative_counts=accumulation)
    runner = StandInRunner(model, wrapper)
    loop = configured_loop()(runner, loader, max_iters=iters)
    wrapper.initialize_count_status(model, 0, iters)
    loop.run()
    return model, dataset, loads


def test_answer_tokens_are_counted_from_the_dataset_without_loading_the_step_ahead(tiny_models):
    """With the dataset's ``answer_token_counts`` the loop reads the sampler's next indices instead of loading the
    step's micro-batches ahead: when a step's first micro-batch reaches the model only that batch has been loaded
    (QLoRA accumulates 128 of them: 127 decoded videos held while the GPU waited). The weights equal those of the
    loading read-ahead (a dataset without the counts), also across the epoch boundary, where the loop falls back
    to reading ahead."""
    counted, dataset, loads = train_per_sample(tiny_models, counts=True, accumulation=4, iters=12)
    loaded, _, loads_ahead = train_per_sample(tiny_models, counts=False, accumulation=4, iters=12)
    assert_same_update(trainable(counted), trainable(loaded), trainable(build_model(tiny_models)), rtol=1e-5)
    # steps at iterations 0 and 8 lie inside an epoch: one batch (2 samples) loaded when they start
    assert loads[0] == 2 and loads[8] - loads[7] == 2
    assert loads_ahead[0] == 8 and loads_ahead[8] - loads_ahead[7] == 8  # the read-ahead loads 4 batches
    assert dataset.loads == 24  # every sample of the two epochs, once
