"""Tests of videoccam/evaluation/distributed.py: ranks from torchrun's variables, one GPU per process (simulated
GPU counts), and the two collectives over gloo in two real processes."""

from __future__ import annotations

import os
import socket

import pytest

from videoccam.evaluation.distributed import OtherRankError, RankGroup, Ranks, device_for_rank

TORCHRUN_2 = {"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}


def test_ranks_from_env() -> None:
    assert Ranks.from_env({}) == Ranks(0, 1, 0, 1)
    assert Ranks.from_env(TORCHRUN_2) == Ranks(1, 4, 1, 2)
    assert Ranks.from_env({"RANK": "2", "WORLD_SIZE": "3"}) == Ranks(2, 3, 2, 3)  # no LOCAL_*: one node
    with pytest.raises(ValueError, match="WORLD_SIZE='two' is not an integer"):
        Ranks.from_env({"RANK": "0", "WORLD_SIZE": "two"})
    with pytest.raises(ValueError, match="RANK=4, WORLD_SIZE=4"):
        Ranks.from_env({**TORCHRUN_2, "RANK": "4"})
    with pytest.raises(ValueError, match="WORLD_SIZE is not set"):
        Ranks.from_env({"RANK": "0"})


def test_device_for_rank_one_gpu_per_process() -> None:
    one = Ranks()
    node = Ranks.from_env(TORCHRUN_2)  # 2 processes on this node, local rank 1
    # one process: as before
    assert device_for_rank("auto", one, cuda_count=0) == "cpu"
    assert device_for_rank("auto", one, cuda_count=2) == "cuda"
    assert device_for_rank("cuda:1", one, cuda_count=2) == "cuda:1"
    # several processes: cuda:LOCAL_RANK, or the CPU
    assert device_for_rank("auto", node, cuda_count=2) == "cuda:1"
    assert device_for_rank("cuda", node, cuda_count=8) == "cuda:1"
    assert device_for_rank("auto", node, cuda_count=0) == "cpu"
    assert device_for_rank("cpu", node, cuda_count=8) == "cpu"
    with pytest.raises(ValueError, match=r"2 processes on this node but 1 GPU\(s\) visible.*--nproc_per_node=1"):
        device_for_rank("auto", node, cuda_count=1)
    with pytest.raises(ValueError, match="--device cuda:0 would put all 4 processes on one GPU"):
        device_for_rank("cuda:0", node, cuda_count=2)


def test_one_process_group_is_plain_calls() -> None:
    group = RankGroup()
    assert (group.rank, group.world_size) == (0, 1)
    assert group.from_rank0(lambda: {"a": 1}) == {"a": 1}
    assert group.outcomes(None, 5) == [5]
    with pytest.raises(KeyError):
        group.outcomes(KeyError("x"))
    group.close()


def test_several_processes_need_a_master_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    with pytest.raises(ValueError, match="MASTER_ADDR, MASTER_PORT not set: start the processes with torchrun"):
        RankGroup(Ranks(0, 2, 0, 2))


def _worker(rank: int, port: int, queue) -> None:  # spawned: one rank of a 2-process gloo group
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    group = RankGroup(Ranks(rank, 2, rank, 2))
    out = {"plan": group.from_rank0(lambda: ["plan", rank])}
    out["payloads"] = group.outcomes(None, rank * 10)
    try:
        group.from_rank0(lambda: 1 / 0)
    except Exception as e:  # noqa: BLE001
        out["rank0_error"] = f"{type(e).__name__}: {e}"
    try:
        group.outcomes(ValueError("bad video v3") if rank == 1 else None, rank)
    except Exception as e:  # noqa: BLE001
        out["outcome_error"] = f"{type(e).__name__}: {e}"
    group.close()
    queue.put((rank, out))


@pytest.mark.slow
def test_collectives_over_gloo_in_two_processes() -> None:
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(r, port, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = dict(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert results[0]["plan"] == results[1]["plan"] == ["plan", 0]  # rank 0's value everywhere
    assert results[0]["payloads"] == results[1]["payloads"] == [0, 10]
    assert results[0]["rank0_error"] == "ZeroDivisionError: division by zero"
    assert results[1]["rank0_error"] == "OtherRankError: rank 0 failed: ZeroDivisionError: division by zero"
    assert results[1]["outcome_error"] == "ValueError: bad video v3"  # its own error
    assert results[0]["outcome_error"] == "OtherRankError: rank 1 failed: ValueError: bad video v3"
    assert issubclass(OtherRankError, RuntimeError)
