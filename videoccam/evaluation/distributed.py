"""The processes of one evaluation launch: who is who (torchrun's environment), which device each takes, and the
two collectives the evaluation needs, over gloo.

``torchrun --nproc_per_node=N tools/eval.py ...`` starts N processes per node with ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` set; without them the evaluation runs
in one process, as a plain ``python tools/eval.py``.

The processes exchange only small Python objects (the work plan, each rank's outcome), so the process group is
always gloo, also on GPUs: no tensor collective is needed, and gloo has no NCCL watchdog to kill a rank that waits
long. Two kinds of collective are used: rank 0 sends the plan before anyone answers
(:meth:`RankGroup.from_rank0`), and every rank reports an outcome (:meth:`RankGroup.outcomes`): once before
answering (can it take part?) and once when its share is answered. The last one waits for the slowest rank, hence
the long default timeout (``DEFAULT_TIMEOUT``, 24 hours, as lmms-eval uses for the same reason); a Python error on
one rank reaches all of them through it, and a rank that dies hard is noticed by torchrun, which stops the others.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

__all__ = ["DEFAULT_TIMEOUT", "OtherRankError", "RankGroup", "Ranks", "device_for_rank"]

DEFAULT_TIMEOUT = timedelta(hours=24)
T = TypeVar("T")


class OtherRankError(RuntimeError):
    """Raised on every rank when another rank failed (the message names the rank and its error)."""


@dataclass(frozen=True)
class Ranks:
    """Position of this process in its launch.

    Attributes:
        rank: Global rank, ``0 <= rank < world_size``.
        world_size: Number of processes in the launch (all nodes).
        local_rank: Rank among the processes of this node.
        local_world_size: Number of processes on this node.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Ranks:
        """Read torchrun's variables; none of them set means one process.

        Raises:
            ValueError: If a variable is not an integer or the values contradict each other.
        """
        env = os.environ if env is None else env
        if "WORLD_SIZE" not in env and "RANK" not in env:
            return cls()

        def get(name: str, default: int | None = None) -> int:
            if name not in env:
                if default is None:
                    raise ValueError(f"{name} is not set but RANK / WORLD_SIZE are: start the processes with torchrun")
                return default
            try:
                return int(env[name])
            except ValueError:
                raise ValueError(f"{name}={env[name]!r} is not an integer") from None

        world_size = get("WORLD_SIZE")
        rank = get("RANK")
        local_rank = get("LOCAL_RANK", rank)
        local_world_size = get("LOCAL_WORLD_SIZE", world_size)
        if not (world_size >= 1 and 0 <= rank < world_size and 0 <= local_rank < local_world_size <= world_size):
            raise ValueError(f"inconsistent process variables: RANK={rank}, WORLD_SIZE={world_size}, "
                             f"LOCAL_RANK={local_rank}, LOCAL_WORLD_SIZE={local_world_size}")  # fmt: skip
        return cls(rank, world_size, local_rank, local_world_size)


def device_for_rank(device: str | None, ranks: Ranks, cuda_count: int | None = None) -> str:
    """The device of this process: ``cpu`` stays ``cpu``; ``auto`` is CUDA when there is a GPU; with several
    processes, process ``i`` of a node takes ``cuda:i`` (``LOCAL_RANK``), one GPU each.

    Args:
        device: ``auto`` / None, ``cpu``, ``cuda`` or ``cuda:N`` (``cuda:N`` only in a one-process run).
        ranks: This process' position.
        cuda_count: GPUs this process sees (default: ``torch.cuda.device_count()``).

    Raises:
        ValueError: If several processes would share a GPU: more processes on the node than GPUs, or one
            ``cuda:N`` for all of them. The message says what to launch instead.
    """
    if cuda_count is None:
        import torch

        cuda_count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device in (None, "", "auto"):
        device = "cuda" if cuda_count > 0 else "cpu"
    if ranks.world_size == 1 or not device.startswith("cuda"):
        return device
    if device != "cuda":
        raise ValueError(f"--device {device} would put all {ranks.world_size} processes on one GPU; use --device "
                         "cuda (or auto): process i of a node takes cuda:i")  # fmt: skip
    if ranks.local_world_size > cuda_count:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        seen = f" (CUDA_VISIBLE_DEVICES={visible})" if visible is not None else ""
        raise ValueError(
            f"{ranks.local_world_size} processes on this node but {cuda_count} GPU(s) visible{seen}: start one "
            f"process per GPU (torchrun --nproc_per_node={max(cuda_count, 1)}), or --device cpu to evaluate on the CPU"
        )
    return f"cuda:{ranks.local_rank}"


class RankGroup:
    """The processes of a launch and their two collectives; with one process both are plain calls.

    Args:
        ranks: This process' position (default: one process).
        timeout: How long a collective may wait for the other ranks.

    Raises:
        ValueError: If several processes are announced but ``MASTER_ADDR`` / ``MASTER_PORT`` are missing.
    """

    def __init__(self, ranks: Ranks | None = None, timeout: timedelta = DEFAULT_TIMEOUT) -> None:
        self.ranks = ranks or Ranks()
        self._dist: Any = None
        if self.ranks.world_size > 1:
            missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(k)]
            if missing:
                raise ValueError(f"WORLD_SIZE={self.ranks.world_size} but {', '.join(missing)} not set: start the "
                                 "processes with torchrun")  # fmt: skip
            import torch.distributed as dist

            dist.init_process_group("gloo", rank=self.ranks.rank, world_size=self.ranks.world_size, timeout=timeout)
            self._dist = dist

    @property
    def rank(self) -> int:
        return self.ranks.rank

    @property
    def world_size(self) -> int:
        return self.ranks.world_size

    def from_rank0(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on rank 0 and return its result on every rank.

        Raises:
            Exception: On rank 0, whatever ``fn`` raised; :class:`OtherRankError` on the other ranks.
        """
        if self._dist is None:
            return fn()
        box: list[Any] = [None]
        error: BaseException | None = None
        if self.rank == 0:
            try:
                box[0] = ("ok", fn())
            except Exception as e:  # sent to the other ranks, then raised here
                error = e
                box[0] = ("error", f"{type(e).__name__}: {e}")
        self._dist.broadcast_object_list(box, src=0)
        if error is not None:
            raise error
        status, value = box[0]
        if status == "error":
            raise OtherRankError(f"rank 0 failed: {value}")
        return value

    def outcomes(self, error: BaseException | None, payload: Any = None) -> list[Any]:
        """Every rank reports whether its part failed, plus a small payload; waits for all ranks.

        Returns:
            The payloads of all ranks, by rank, when no rank failed.

        Raises:
            Exception: ``error`` itself on the rank that failed; :class:`OtherRankError` naming the failed ranks
                and their errors on the others.
        """
        if self._dist is None:
            if error is not None:
                raise error
            return [payload]
        report = (None if error is None else f"{type(error).__name__}: {error}", payload)
        gathered: list[Any] = [None] * self.world_size
        self._dist.all_gather_object(gathered, report)
        if error is not None:
            raise error
        failed = [f"rank {r} failed: {msg}" for r, (msg, _) in enumerate(gathered) if msg]
        if failed:
            raise OtherRankError("; ".join(failed))
        return [p for _, p in gathered]

    def close(self, wait: timedelta = timedelta(seconds=60)) -> None:
        """Leave the process group together (nothing with one process).

        The ranks first meet in a barrier (at most ``wait``; a rank that does not come is not waited for longer):
        a rank that tears its gloo connections down while a peer still uses them can abort the peer's process at
        exit ("terminate called without an active exception", seen once in ~20 two-process runs).
        """
        if self._dist is not None and self._dist.is_initialized():
            try:
                self._dist.monitored_barrier(timeout=wait)
            except RuntimeError:  # a peer failed or left: nothing to wait for
                pass
            self._dist.destroy_process_group()
        self._dist = None
