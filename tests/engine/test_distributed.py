"""Distributed training on CPU: 2-rank DDP on gloo, DeepSpeed ZeRO-2 and ZeRO-3 in fp32, and ``--resume``.

Every run trains the tiny stage-2 config (projector + LoRA on the LLM and on SigLIP, LoRA dropout 0) through
``tools/train.py`` (two ranks: ``torchrun --nproc_per_node=2 tools/train.py CFG --launcher pytorch``) for 6
iterations of a global batch of 4 (8 records, 3 epochs), from the same initial weights (``pretrained_pth``),
with a checkpoint every 3 iterations. ``LossRecorderHook`` (tests/engine/loss_recorder.py, added by
tests/engine/tiny_dist_config.py) writes every rank's exact loss and frame count per iteration.

Why the losses can be compared exactly: mmengine's ``DefaultSampler`` (shuffle=True, seed 0) permutes the 8
indices identically on every rank and hands rank r the entries r, r+2, ..., so a single process with batch 4
and two ranks with batch 2 see the same 4 samples at each step. Every record has the same answer, hence the
same number of supervised tokens, so the single process's token-mean loss equals the mean of the two ranks'
losses, and the gradient DDP / DeepSpeed average equals the single process's gradient. Dropout is 0
everywhere. The data puts two text-only records in rank 0's first batch and a video + an image (17 frames, two
vision-tower calls of 16) in rank 1's.

What runs on CPU (torch 2.13.0+cpu, deepspeed 0.19.6, gloo; timings in configs/deepspeed/README.md):

* DDP (``MMDistributedDataParallel``, gloo): losses equal a single process's with the same global batch.
* ZeRO-2 fp32 (``configs/deepspeed/zero2_fp32_cpu.json``): same losses as DDP; the checkpoint is a folder of
  DeepSpeed shards with only the trainable tensors; ``load_pretrained`` and tools/convert_to_hf.py read it;
  ``--resume`` continues bit for bit (optimizer states, lr schedule and data position restored).
* ZeRO-3 fp32 (``configs/deepspeed/zero3_fp32_cpu.json``, with activation checkpointing) runs too, on two
  conditions found here: ``stage3_allgather_sequential: true`` (DeepSpeed's coalesced all-gather waits only
  for its last gloo work handle, and the weights transformers loads under ``zero.Init`` came out corrupted -
  NaN or wrong losses - in 6 of 14 runs without it; the key needs deepspeed>=0.18.5), and ``VideoCCAMModel``
  making the same module calls on every rank (``_zero3_lockstep``; without it the text-only rank hung against
  the rank with two vision chunks, or the ranks' backward passes exchanged mismatched buffers).
* A single-process ``--resume`` from a run killed right after its checkpoint continues bit for bit.
* Resumes load weights-only through the allow-list of videoccam/checkpoint.py (mmengine's and DeepSpeed's state);
  a ZeRO-2 folder with a payload in one optimizer shard is refused by ``--resume``, ``pretrained_pth`` and
  tools/convert_to_hf.py, naming the shard, and the payload never runs.
* Two "nodes" of one process each on 127.0.0.1 (gloo): DDP launched with torchrun's rendezvous (``--nnodes=2
  --rdzv-backend=c10d --rdzv-endpoint``), DeepSpeed ZeRO-2 with the stock ``xtuner train`` and its ``NNODES`` /
  ``NODE_RANK`` / ``NPROC_PER_NODE`` / ``ADDR`` / ``PORT`` variables (torchrun's static ``--master_addr``): both
  give the single process's losses. The multi-node launch is configs/README.md's "Multi-node".
* SampleAnswersHook (on in the tiny stage-2 config; here every 3 iterations: after iteration 3 and at the end):
  rank 0 prints the answers once, ZeRO-3's ranks all run the generation (no hang, between steps and at the end),
  the losses stay those of the single process, and every engine gives the same answers.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT, load_tool, tiny_cfg_options, write_malicious_checkpoint

pytestmark = pytest.mark.slow
needs_deepspeed = pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None,
                                     reason="DeepSpeed is not installed (bash tools/install.sh deepspeed)")


def _deepspeed_version() -> tuple[int, ...]:
    from importlib.metadata import version

    return tuple(int(part) for part in version("deepspeed").split(".")[:3] if part.isdigit())


# zero3_fp32_cpu.json sets stage3_allgather_sequential, a key DeepSpeed accepts from 0.18.5 on (older releases
# reject unknown keys, and have the coalesced all-gather race that the key avoids)
needs_zero3_cpu = pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None or _deepspeed_version() < (0, 18, 5),
                                     reason="ZeRO-3 on CPU needs deepspeed>=0.18.5 (stage3_allgather_sequential)")

CONFIG = str(ROOT / "tests/engine/tiny_dist_config.py")
ZERO2 = str(ROOT / "configs/deepspeed/zero2_fp32_cpu.json")
ZERO3 = str(ROOT / "configs/deepspeed/zero3_fp32_cpu.json")
NUM_RECORDS, GLOBAL_BATCH, EPOCHS, CKPT_EVERY, SEED = 8, 4, 3, 3, 0
ITERS = NUM_RECORDS // GLOBAL_BATCH * EPOCHS  # 6
ANSWER = "A red square appears."
RUN_TIMEOUT = 240  # seconds; a hung collective must fail the test, not the CI job


def _kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and all its descendants (found through /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    todo, tree = [pid], []
    while todo:
        tree.append(todo.pop())
        todo.extend(children.get(tree[-1], []))
    for p in tree:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_records(synthetic_data: Path, out: Path) -> Path:
    """8 records with identical answers; text-only at rank 0's first batch, video + image at rank 1's."""
    videos = sorted(p.relative_to(synthetic_data).as_posix() for p in (synthetic_data / "videos").glob("train_*"))
    images = sorted(p.relative_to(synthetic_data).as_posix() for p in (synthetic_data / "images").glob("*.jpg"))
    order = torch.randperm(NUM_RECORDS, generator=torch.Generator().manual_seed(SEED)).tolist()  # = DefaultSampler
    text_slots, image_slots = {order[0], order[2]}, {order[3]}  # rank r takes order[r::2]

    def turn(question: str) -> list[dict[str, str]]:
        return [{"from": "human", "value": question}, {"from": "gpt", "value": ANSWER}]

    records = []
    for i in range(NUM_RECORDS):
        if i in text_slots:
            records.append({"id": f"text_{i}", "conversations": turn(f"Which shape is number {i}?")})
        elif i in image_slots:
            records.append({"id": f"image_{i}", "image": images[i % len(images)],
                            "conversations": turn("<image>\nWhat is in the picture?")})
        else:
            records.append({"id": f"video_{i}", "video": videos[i % len(videos)],
                            "conversations": turn("<video>\nWhat appears first?")})
    path = out / "dist_train.json"
    path.write_text(json.dumps(records, indent=1))
    return path


def _build_model(tiny_models: Path, pretrained_pth: str | None = None):
    """The VideoCCAMModel of CONFIG, in this process."""
    from videoccam import xtuner_compat

    xtuner_compat.install()
    from mmengine.config import Config
    from xtuner.registry import BUILDER

    cfg = Config.fromfile(CONFIG)
    cfg.merge_from_dict({"model.llm.pretrained_model_name_or_path": str(tiny_models / "qwen2"),
                         "model.visual_encoder.pretrained_model_name_or_path": str(tiny_models / "siglip"),
                         "model.pretrained_pth": pretrained_pth})
    return BUILDER.build(cfg.model)


class Run:
    """One finished training run: its work dir, per-iteration losses, exit code and output."""

    def __init__(self, work_dir: Path, returncode: int, output: str, seconds: float):
        self.work_dir, self.returncode, self.output, self.seconds = work_dir, returncode, output, seconds
        path = work_dir / "losses.json"
        self.records = json.loads(path.read_text()) if path.is_file() else []

    @property
    def losses(self) -> dict[int, float]:
        return {r["iter"]: r["loss"] for r in self.records}

    def checkpoint(self, it: int) -> Path:
        path = self.work_dir / f"iter_{it}.pth"
        assert path.exists(), f"no checkpoint {path}\n{self.tail()}"
        return path

    def tail(self, n: int = 4000) -> str:
        return self.output[-n:]


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    venv_bin = str(Path(sys.executable).parent)  # torchrun's workers, ninja for DeepSpeed's JIT ops
    return {**os.environ, "PATH": venv_bin + os.pathsep + os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT),
            "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false", **(extra or {})}


def _torchrun(nproc: int) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--master_addr=127.0.0.1",
            f"--master_port={_free_port()}"]


def _run(cmd: list[str], env: dict[str, str]) -> tuple[int, str, float]:
    """Run ``cmd``; returns (exit code, output, seconds). Killed (with its workers) after RUN_TIMEOUT seconds."""
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        _kill_tree(proc.pid)  # torchrun's workers live in sessions of their own: kill them one by one
        output, _ = proc.communicate()
        pytest.fail(f"did not finish in {RUN_TIMEOUT} s (hung collective?): {' '.join(cmd)}\n{output[-4000:]}")
    return proc.returncode, output, time.monotonic() - start


def _run_nodes(cmds: list[tuple[list[str], dict[str, str]]]) -> tuple[int, str, float]:
    """Run one command per "node" at once; returns (the worst exit code, both outputs, seconds)."""
    start = time.monotonic()
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True) for cmd, env in cmds]  # fmt: skip
    outputs = []
    deadline = start + RUN_TIMEOUT
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=max(1.0, deadline - time.monotonic()))[0])
    except subprocess.TimeoutExpired:
        for proc in procs:
            _kill_tree(proc.pid)
        tails = "\n".join(p.communicate()[0][-3000:] for p in procs)
        pytest.fail(f"the two nodes did not finish in {RUN_TIMEOUT} s (hung rendezvous or collective?)\n{tails}")
    output = "".join(f"----- node {i} -----\n{out}" for i, out in enumerate(outputs))
    return max(abs(p.returncode) for p in procs), output, time.monotonic() - start


def _train_two_nodes(work_dir: Path, opts: list[str], deepspeed: str | None = None) -> Run:
    """Two single-process "nodes" on 127.0.0.1 sharing ``work_dir`` (as nodes share a file system).

    DDP: ``torchrun --nnodes=2 --nproc_per_node=1`` with c10d rendezvous on each node. DeepSpeed: the stock
    ``xtuner train`` with ``NNODES=2 NODE_RANK=<n> NPROC_PER_NODE=1 ADDR=127.0.0.1 PORT=<p>`` (it runs torchrun
    with a static ``--master_addr``); its exit status is always 0, so only the artefacts count.
    """
    port = _free_port()
    cmds = []
    for node in (0, 1):
        args = [CONFIG, "--work-dir", str(work_dir)]
        if deepspeed:
            env = _env({"NNODES": "2", "NODE_RANK": str(node), "NPROC_PER_NODE": "1", "ADDR": "127.0.0.1",
                        "PORT": str(port)})  # fmt: skip
            cmd = [str(Path(sys.executable).parent / "xtuner"), "train", *args, "--deepspeed", deepspeed]
        else:
            env = _env()
            cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1",
                   "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}", "--rdzv-id=videoccam-two-nodes",
                   str(ROOT / "tools/train.py"), *args, "--launcher", "pytorch"]  # fmt: skip
        cmds.append((cmd + ["--cfg-options", *opts], env))
    return Run(work_dir, *_run_nodes(cmds))


def _train(work_dir: Path, opts: list[str], nproc: int = 1, deepspeed: str | None = None,
           resume: Path | None = None, env: dict[str, str] | None = None) -> Run:
    """Run tools/train.py (under torchrun when nproc > 1) in a subprocess."""
    cmd = _torchrun(nproc) if nproc > 1 else [sys.executable]
    cmd += [str(ROOT / "tools/train.py"), CONFIG, "--work-dir", str(work_dir)]
    if nproc > 1:
        cmd += ["--launcher", "pytorch"]
    if deepspeed:
        cmd += ["--deepspeed", deepspeed]
    if resume:
        cmd += ["--resume", str(resume)]
    cmd += ["--cfg-options", *opts]
    return Run(work_dir, *_run(cmd, _env(env)))


class Runs:
    """Training runs shared by the tests of this module, each started on first use."""

    def __init__(self, tmp: Path, tiny_models: Path, synthetic_data: Path):
        self.tmp = tmp
        data = _write_records(synthetic_data, tmp)
        # one set of initial trainable weights for every run: the single-process Runner, DDP and DeepSpeed's
        # FlexibleRunner draw from the seeded RNG in different orders, so their random inits would differ
        torch.manual_seed(SEED)
        model = _build_model(tiny_models)
        self.trainable = set(model.trainable_parameter_names())
        self.init_weights = {k: v.clone() for k, v in model.state_dict().items()}
        init = tmp / "init.pth"
        torch.save({"state_dict": self.init_weights}, init)
        self.opts = tiny_cfg_options(tiny_models, synthetic_data) + [
            f"train_dataloader.dataset.data_path={data}",
            "train_dataloader.dataset.num_frames=16",  # the video below: 16 frames (the tiny recipe samples 8)
            f"model.pretrained_pth={init}",
            "model.llm_lora.lora_dropout=0.0",
            "model.visual_encoder_lora.lora_dropout=0.0",
            f"train_dataloader.batch_size={GLOBAL_BATCH}",
            "train_dataloader.sampler.shuffle=True",
            f"randomness.seed={SEED}",
            f"train_cfg.max_epochs={EPOCHS}",
            f"default_hooks.checkpoint.interval={CKPT_EVERY}",
            "default_hooks.checkpoint.max_keep_ckpts=-1",
            "default_hooks.logger.interval=1",
            f"custom_hooks.2.interval={CKPT_EVERY}",  # SampleAnswersHook: mid-training (after a step) and at the end
        ]
        self._cache: dict[str, Run] = {}

    def _get(self, name: str, nproc: int, deepspeed: str | None = None, resume: Path | None = None,
             env: dict[str, str] | None = None, expect_rc: int = 0, extra: tuple[str, ...] = ()) -> Run:
        if name not in self._cache:
            opts = self.opts + ([f"train_dataloader.batch_size={GLOBAL_BATCH // nproc}"] if nproc > 1 else [])
            opts += list(extra)
            run = _train(self.tmp / name, opts, nproc, deepspeed, resume, env)
            assert run.returncode == expect_rc, f"{name}: exit {run.returncode}\n{run.tail()}"
            print(f"\n[{name}] {run.seconds:.1f} s")
            self._cache[name] = run
        return self._cache[name]

    def single(self) -> Run:
        return self._get("single", 1)

    def ddp(self) -> Run:
        return self._get("ddp", 2)

    def zero2(self) -> Run:
        return self._get("zero2", 2, deepspeed=ZERO2)

    def zero3(self) -> Run:
        # with activation checkpointing, as the real recipes: the recomputation must keep the ranks in step too
        return self._get("zero3", 2, deepspeed=ZERO3, extra=("model.use_activation_checkpointing=True",))

    def two_nodes(self, deepspeed: str | None = None) -> Run:
        name = "two_nodes_" + ("zero2" if deepspeed else "ddp")
        if name not in self._cache:
            opts = self.opts + [f"train_dataloader.batch_size={GLOBAL_BATCH // 2}"]
            run = _train_two_nodes(self.tmp / name, opts, deepspeed)
            assert run.returncode == 0 and run.losses, f"{name}: exit {run.returncode}\n{run.tail(6000)}"
            print(f"\n[{name}] {run.seconds:.1f} s")
            self._cache[name] = run
        return self._cache[name]


@pytest.fixture(scope="module")
def runs(tiny_models, synthetic_data, tmp_path_factory) -> Runs:
    return Runs(tmp_path_factory.mktemp("dist"), tiny_models, synthetic_data)


def _assert_losses_match(got: Run, want: Run, iters, rtol: float = 1e-5) -> None:
    for it in iters:
        assert it in got.losses, f"iteration {it} missing in {got.work_dir}\n{got.tail()}"
        assert got.losses[it] == pytest.approx(want.losses[it], rel=rtol), (
            f"iteration {it}: {got.work_dir.name} loss {got.losses[it]!r} != {want.work_dir.name} {want.losses[it]!r}"
        )


def _assert_same_training(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor],
                          init: dict[str, torch.Tensor], rtol: float = 2e-2) -> None:
    """The two runs moved the weights the same way: |got - want| is small against the update |want - init|.

    Element-wise closeness is the wrong test after a few Adam steps: where a gradient is ~0 (a key bias, which
    softmax ignores), Adam's update is ~lr * sign(noise), so reduction order alone flips it. Measured here:
    single, DDP, ZeRO-2 and ZeRO-3 within 2e-6 to 4e-6 of each other (3e-3 with other tiny weights); a run
    that skipped or mis-averaged a step is off by O(1).
    """
    assert set(got) == set(want)
    diff = sum(float((got[k].double() - want[k].double()).norm()) ** 2 for k in want) ** 0.5
    update = sum(float((want[k].double() - init[k].double()).norm()) ** 2 for k in want) ** 0.5
    assert update > 0, "the reference run did not change any weight"
    assert diff <= rtol * update, f"weights differ by {diff:.3g}, {diff / update:.2%} of the update norm {update:.3g}"


def _answers(run: Run) -> list[str]:
    """The sample answers the run printed (SampleAnswersHook, once per answering, by rank 0)."""
    return re.findall(r"^\s+A: (.*)$", run.output, flags=re.MULTILINE)


def _assert_answered_once(run: Run) -> None:
    """Rank 0 printed the answers once at iteration 3 and once at 6, the last (not again at the end)."""
    for it in (CKPT_EVERY, ITERS):
        assert run.output.count(f"sample answers at iteration {it}:") == 1, run.tail()
    assert len(_answers(run)) == 4, run.tail()  # the first video and the first image of the data, twice


def _final_weights(run: Run) -> dict[str, torch.Tensor]:
    """The trainable weights after the last iteration, fp32 (DeepSpeed: the master weights of the shards)."""
    ckpt = run.checkpoint(ITERS)
    if ckpt.is_dir():
        from xtuner.utils.zero_to_any_dtype import get_state_dict_from_zero_checkpoint

        return get_state_dict_from_zero_checkpoint(str(ckpt.parent), ckpt.name, dtype=torch.float32)
    return torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]


def test_ddp_two_ranks_match_single_process_with_same_global_batch(runs):
    single, ddp = runs.single(), runs.ddp()
    assert sorted(single.losses) == sorted(ddp.losses) == list(range(1, ITERS + 1))
    # really data-parallel: each rank had its own half of the batch (rank 0 text-only at iteration 1)
    first = ddp.records[0]
    assert first["rank_frames"] == [0, 17] and single.records[0]["rank_frames"] == [17]
    assert first["rank_losses"][0] != pytest.approx(first["rank_losses"][1], rel=1e-3)
    _assert_losses_match(ddp, single, range(1, ITERS + 1))
    _assert_answered_once(ddp)
    assert _answers(ddp) == _answers(single)
    want = torch.load(single.checkpoint(ITERS), map_location="cpu", weights_only=False)["state_dict"]
    got = torch.load(ddp.checkpoint(ITERS), map_location="cpu", weights_only=False)["state_dict"]
    _assert_same_training(got, want, runs.init_weights)


def test_resume_after_kill_continues_the_loss_curve_step_for_step(runs):
    """Kill a training right after its checkpoint at iteration 3, resume it, compare with an uninterrupted run."""
    full = runs.single()
    killed = runs._get("killed", 1, env={"LOSS_RECORDER_EXIT_AFTER_ITER": "3"}, expect_rc=17)
    assert sorted(killed.losses) == [1, 2, 3]
    _assert_losses_match(killed, full, [1, 2, 3], rtol=1e-6)
    resumed = runs._get("resumed", 1, resume=killed.checkpoint(3))
    assert "Advance dataloader 3 steps" in resumed.output  # the data position is restored, not restarted
    assert sorted(resumed.losses) == [4, 5, 6]
    _assert_losses_match(resumed, full, [4, 5, 6], rtol=1e-6)
    # the lr schedule and the optimizer state resumed too: same final weights
    assert [r["lr"] for r in resumed.records] == pytest.approx([r["lr"] for r in full.records[3:]], rel=1e-9)
    _assert_same_training(_final_weights(resumed), _final_weights(full), runs.init_weights, rtol=1e-6)


@needs_deepspeed
def test_deepspeed_zero2_fp32_matches_ddp_and_saves_only_trainable_weights(runs):
    z2, ddp = runs.zero2(), runs.ddp()
    assert all(torch.isfinite(torch.tensor(r["rank_losses"])).all() for r in z2.records)
    _assert_losses_match(z2, ddp, range(1, ITERS + 1))
    ckpt = z2.checkpoint(ITERS)
    assert ckpt.is_dir() and (ckpt / "mp_rank_00_model_states.pt").is_file()
    assert sorted(p.name for p in ckpt.glob("zero_pp_rank_*_optim_states.pt")) == [
        "zero_pp_rank_0_mp_rank_00_optim_states.pt", "zero_pp_rank_1_mp_rank_00_optim_states.pt"]
    module = torch.load(ckpt / "mp_rank_00_model_states.pt", map_location="cpu", weights_only=False)["module"]
    trainable = runs.trainable
    assert set(module) == trainable  # frozen LLM / SigLIP weights are not in the checkpoint
    weights = _final_weights(z2)
    assert set(weights) == trainable and all(w.dtype == torch.float32 for w in weights.values())
    _assert_same_training(weights, _final_weights(ddp), runs.init_weights)
    # tools/convert_to_hf.py reads the folder (through VideoCCAMModel.load_pretrained)
    out = runs.tmp / "zero2_hf"
    opts = [o for o in runs.opts if o.split("=")[0].endswith("pretrained_model_name_or_path")]
    assert load_tool("convert_to_hf").main([CONFIG, str(ckpt), str(out), "--cfg-options", *opts]) == 0
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()


@needs_deepspeed
def test_deepspeed_zero2_resume_restores_optimizer_and_data_position(runs):
    z2 = runs.zero2()
    resumed = runs._get("zero2_resumed", 2, deepspeed=ZERO2, resume=z2.checkpoint(3))
    assert "Advance dataloader 3 steps" in resumed.output
    assert sorted(resumed.losses) == [4, 5, 6]
    _assert_losses_match(resumed, z2, [4, 5, 6], rtol=1e-6)
    _assert_same_training(_final_weights(resumed), _final_weights(z2), runs.init_weights, rtol=1e-6)


@needs_deepspeed
def test_deepspeed_folder_that_would_run_code_is_refused_by_resume_convert_and_pretrained_pth(runs, tiny_models):
    """A ZeRO-2 folder whose rank-1 optimizer shard carries a payload: DeepSpeed's engine (resume) and xtuner's ZeRO
    reader (pretrained_pth, tools/convert_to_hf.py) load it with weights_only=False; ours refuse it, naming it."""
    import deepspeed  # noqa: F401 - the allow-list takes DeepSpeed's classes once deepspeed is imported

    from videoccam.checkpoint import UnsafeCheckpointError, load_checkpoint

    marker = runs.tmp / "zero2_payload_ran"
    evil = runs.tmp / "evil_zero2" / "iter_3.pth"
    shutil.copytree(runs.zero2().checkpoint(3), evil)
    shard = evil / "zero_pp_rank_1_mp_rank_00_optim_states.pt"
    write_malicious_checkpoint(shard, marker, load_checkpoint(shard))
    refusal = f"refusing to load checkpoint '{shard}': it needs the global posix.system"

    resumed = _train(runs.tmp / "evil_resumed", runs.opts + [f"train_dataloader.batch_size={GLOBAL_BATCH // 2}"], 2,
                     ZERO2, resume=evil)  # fmt: skip
    assert resumed.returncode != 0 and refusal in resumed.output, resumed.tail()
    opts = [o for o in runs.opts if o.split("=")[0].endswith("pretrained_model_name_or_path")]
    assert load_tool("convert_to_hf").main([CONFIG, str(evil), str(runs.tmp / "evil_hf"), "--cfg-options", *opts]) == 1
    with pytest.raises(UnsafeCheckpointError, match=re.escape(refusal)):
        _build_model(tiny_models, pretrained_pth=str(evil))
    assert not marker.exists()


@needs_zero3_cpu
def test_deepspeed_zero3_fp32_text_only_rank_does_not_hang_and_checkpoint_loads(runs, tiny_models):
    z3, ddp = runs.zero3(), runs.ddp()
    # iteration 1: rank 0 had only text (one dummy vision call), rank 1 a video + an image (two calls)
    assert z3.records[0]["rank_frames"] == [0, 17]
    _assert_losses_match(z3, ddp, range(1, ITERS + 1))
    # SampleAnswersHook: both ranks generated in step (synced decoding), rank 0 printed, same answers as DDP
    _assert_answered_once(z3)
    assert _answers(z3) == _answers(ddp)
    ckpt = z3.checkpoint(ITERS)
    assert sorted(p.name for p in ckpt.iterdir()) == [
        "zero_pp_rank_0_mp_rank_00_model_states.pt", "zero_pp_rank_0_mp_rank_00_optim_states.pt",
        "zero_pp_rank_1_mp_rank_00_model_states.pt", "zero_pp_rank_1_mp_rank_00_optim_states.pt"]
    weights = _final_weights(z3)
    assert set(weights) == runs.trainable
    _assert_same_training(weights, _final_weights(ddp), runs.init_weights)
    # pretrained_pth / tools/convert_to_hf.py path: a fresh model loads the folder (a work dir: its
    # last_checkpoint is used) with the fp32 master weights, not xtuner's float16 rounding of them
    state = _build_model(tiny_models, pretrained_pth=str(z3.work_dir)).state_dict()
    assert all(torch.equal(state[name], weights[name]) for name in weights)


@needs_zero3_cpu
def test_zero3_pretrained_pth_loads_into_partitioned_weights(tiny_models, tmp_path):
    """A checkpoint with full LLM weights loads although ZeRO-3 partitioned them at build time (2 ranks)."""
    code, output, _ = _run(_torchrun(2) + [str(ROOT / "tests/engine/zero3_load_worker.py"), str(tiny_models),
                                           str(tmp_path)], _env())
    assert code == 0, output[-4000:]
    assert output.count(" wrong []") == 2, output[-4000:]


def test_two_nodes_ddp_on_localhost_match_single_process(runs):
    """torchrun --nnodes=2 (c10d rendezvous on 127.0.0.1), one process per node: the single process's losses."""
    nodes, single = runs.two_nodes(), runs.single()
    assert sorted(nodes.losses) == list(range(1, ITERS + 1)), nodes.tail()
    assert len(nodes.records[0]["rank_frames"]) == 2  # two ranks, one per node
    _assert_losses_match(nodes, single, range(1, ITERS + 1))
    _assert_answered_once(nodes)


@needs_deepspeed
def test_two_nodes_deepspeed_zero2_with_xtuner_env_match_single_process(runs):
    """NNODES=2 NODE_RANK=0|1 ADDR PORT xtuner train --deepspeed ZeRO-2: the single process's losses."""
    nodes, single = runs.two_nodes(deepspeed=ZERO2), runs.single()
    assert sorted(nodes.losses) == list(range(1, ITERS + 1)), nodes.tail()
    assert "--nnodes=2" in nodes.output or len(nodes.records[0]["rank_frames"]) == 2
    _assert_losses_match(nodes, single, range(1, ITERS + 1))
    ckpt = nodes.checkpoint(ITERS)
    assert sorted(p.name for p in ckpt.glob("zero_pp_rank_*_optim_states.pt")) == [
        "zero_pp_rank_0_mp_rank_00_optim_states.pt", "zero_pp_rank_1_mp_rank_00_optim_states.pt"]
