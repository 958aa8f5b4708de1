"""How the questions of an evaluation are cut into blocks and batches, and shared among processes.

The blocks and batches depend only on the question list and the batch size, never on the number of processes:
a run on N processes asks the model exactly the batches a one-process run asks (same prompts, same order, so the
same padding), and a run killed and resumed on any number of processes completes the same batches.

* **Items** are ``(question, variant)`` pairs in benchmark order (Video-MME asks each question twice).
* **Videos**: items grouped by their media, in order of first appearance. A video is decoded and encoded once per
  frame count and its features serve all of its items.
* **Blocks**: consecutive videos. A block closes at the first video boundary where, for each generation budget
  (multiple-choice and open-ended questions are batched apart), it holds a whole number of batches; a block that
  never lines up closes once it holds ``MAX_BLOCK_BATCHES * batch_size`` items. Batches are cut inside a block,
  mixing its videos, and a block ends its batches, so no batch depends on another block. Blocks that line up
  cost nothing: their batches are those of one pass over all the questions. Only a forced close leaves a
  partial batch (at most one per budget, i.e. about one generate call in sixteen at worst).
* **Shards**: the blocks with work left go to the ranks in contiguous runs balanced by the number of items left
  (:func:`assign_blocks`); a block is never split, so a video is never decoded by two ranks, and a rank's load
  differs from the mean by at most one block.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

__all__ = ["MAX_BLOCK_BATCHES", "assign_blocks", "plan_blocks"]

MAX_BLOCK_BATCHES = 8


def plan_blocks(
    media_keys: Sequence[Hashable], batch_size: int, budget_keys: Sequence[Hashable] | None = None
) -> list[list[int]]:
    """Cut items into blocks of whole videos (see the module docstring).

    Time and memory grow linearly with the number of items.

    Args:
        media_keys: For each item (in benchmark order), the key of its video.
        batch_size: Items per generate call.
        budget_keys: For each item, its generation budget (items of different budgets are batched apart);
            default: one budget.

    Returns:
        Blocks of item indices; inside a block the items of a video are consecutive (videos in order of first
        appearance, items of a video in benchmark order). Every item is in exactly one block.

    Raises:
        ValueError: If ``batch_size < 1`` or ``budget_keys`` has another length than ``media_keys``.
    """
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    if budget_keys is not None and len(budget_keys) != len(media_keys):
        raise ValueError(f"{len(budget_keys)} budgets for {len(media_keys)} items")
    by_video: dict[Hashable, list[int]] = {}
    for i, key in enumerate(media_keys):
        by_video.setdefault(key, []).append(i)
    blocks: list[list[int]] = []
    current: list[int] = []
    counts: dict[Hashable, int] = {}
    for items in by_video.values():
        current.extend(items)
        for i in items:
            budget = None if budget_keys is None else budget_keys[i]
            counts[budget] = counts.get(budget, 0) + 1
        whole = all(c % batch_size == 0 for c in counts.values())
        if whole or len(current) >= MAX_BLOCK_BATCHES * batch_size:
            blocks.append(current)
            current, counts = [], {}
    if current:
        blocks.append(current)
    return blocks


def assign_blocks(weights: Sequence[int], world_size: int) -> list[list[int]]:
    """Share blocks among ranks: contiguous runs of blocks, balanced by weight (items left to answer).

    A block goes to the rank whose equal share of the total weight holds the block's midpoint, so each rank's
    load differs from ``total / world_size`` by at most one block. Blocks of weight 0 (nothing left) go to
    nobody. Time grows linearly with the number of blocks.

    Args:
        weights: Items left in each block.
        world_size: Number of ranks.

    Returns:
        For each rank, the indices of its blocks, in order.

    Raises:
        ValueError: If ``world_size < 1`` or a weight is negative.
    """
    if world_size < 1:
        raise ValueError(f"world size must be >= 1, got {world_size}")
    if any(w < 0 for w in weights):
        raise ValueError(f"block weights must be >= 0, got {list(weights)}")
    total = sum(weights)
    shards: list[list[int]] = [[] for _ in range(world_size)]
    before = 0
    for b, w in enumerate(weights):
        if w == 0:
            continue
        rank = min(world_size - 1, (2 * before + w) * world_size // (2 * total))
        shards[rank].append(b)
        before += w
    return shards
