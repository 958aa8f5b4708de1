"""Tests of videoccam/evaluation/sharding.py: blocks of whole videos, balanced contiguous shards."""

from __future__ import annotations

import pytest

from videoccam.evaluation.sharding import MAX_BLOCK_BATCHES, assign_blocks, plan_blocks


def _videos(sizes: list[int]) -> list[str]:
    return [f"v{n}" for n, size in enumerate(sizes) for _ in range(size)]


def test_blocks_keep_videos_whole_and_close_on_whole_batches() -> None:
    media = [f"v{(i * 7) % 13}" for i in range(40)]  # 13 videos, their items interleaved in benchmark order
    budgets = [i % 5 == 0 for i in range(40)]  # some open-ended questions, batched apart
    for batch_size in (1, 2, 3, 4):
        blocks = plan_blocks(media, batch_size, budgets)
        assert sorted(i for b in blocks for i in b) == list(range(40))  # every item exactly once
        video_block: dict[str, int] = {}
        for n, block in enumerate(blocks):
            for i in block:
                assert video_block.setdefault(media[i], n) == n  # a video lives in one block
            seen = [media[i] for i in block]
            assert seen == sorted(seen, key=seen.index)  # its items are consecutive
            # the block closes at its first video boundary where each budget holds whole batches
            videos = list(dict.fromkeys(seen))
            for end in range(1, len(videos) + 1):
                part = [i for i in block if media[i] in videos[:end]]
                whole = all(sum(budgets[i] == g for i in part) % batch_size == 0 for g in (True, False))
                if end < len(videos):
                    assert not whole
                elif n < len(blocks) - 1:
                    assert whole or len(block) >= MAX_BLOCK_BATCHES * batch_size
    assert [len(b) for b in plan_blocks(media, 1)] == [len(media) // 13 + (i < 40 % 13) for i in range(13)]
    assert plan_blocks(_videos([3, 1, 2, 2]), 2) == [[0, 1, 2, 3], [4, 5], [6, 7]]
    # by budget: after video 0 the open-ended budget holds half a batch, after video 1 both hold whole ones
    assert plan_blocks(_videos([2, 2]), 2, [False, True, True, False]) == [[0, 1, 2, 3]]
    assert plan_blocks(_videos([2, 2]), 2, [False, False, True, True]) == [[0, 1], [2, 3]]
    # not lined up (2 + 4k items with batches of 4): closed at MAX_BLOCK_BATCHES batches' worth of items, after
    # which the videos of 4 line up again
    forced = plan_blocks(_videos([2] + [4] * 20), 4)
    assert [len(b) for b in forced] == [34] + [4] * 12 and MAX_BLOCK_BATCHES * 4 == 32
    with pytest.raises(ValueError, match="batch size"):
        plan_blocks(media, 0)
    with pytest.raises(ValueError, match="2 budgets for 40 items"):
        plan_blocks(media, 2, [True, False])


def test_shards_are_contiguous_balanced_and_skip_finished_blocks() -> None:
    weights = [5, 3, 8, 0, 2, 7, 7, 1, 4, 6]
    for world in (1, 2, 3, 4, 16):
        shards = assign_blocks(weights, world)
        assert len(shards) == world
        flat = [b for s in shards for b in s]
        assert flat == [b for b, w in enumerate(weights) if w]  # contiguous, in order, empty blocks dropped
        loads = [sum(weights[b] for b in s) for s in shards]
        assert all(abs(load - sum(weights) / world) <= max(weights) for load in loads)
    assert assign_blocks([4, 4, 4, 4], 2) == [[0, 1], [2, 3]]
    assert assign_blocks([0, 0], 2) == [[], []]
    assert assign_blocks([1], 3) == [[], [0], []]  # the middle share holds the midpoint
    with pytest.raises(ValueError, match="world size"):
        assign_blocks([1], 0)
    with pytest.raises(ValueError, match=">= 0"):
        assign_blocks([1, -1], 2)
