"""Cross-entropy of the LM head over answer tokens in chunks, without holding ``[tokens, vocab]`` logits at once.

The plain loss builds fp32 logits for every answer token of the micro-batch, keeps them (and their log-softmax)
for backward and builds their gradient there: with a 152,064-word vocabulary that is 0.6 MB per token for each
of those tensors, 28 GiB of the 57 GiB the memory planner gives the Qwen2.5-7B stage-2 recipe. Here the tokens
go through the head ``chunk_size`` at a time, each chunk under activation checkpointing: its logits are freed as
soon as its summed loss is known and recomputed, one chunk at a time, in backward (except the last chunk, whose
backward comes first anyway). Peak loss memory is then a few ``chunk_size x vocab`` fp32 tensors instead of as
many ``tokens x vocab`` ones, at the cost of one more head forward (the recomputation) over all answer tokens but
the last chunk.

The head is called as a module (``head(hidden_chunk)``) rather than through its weight, so anything that hooks
module calls keeps working: DeepSpeed ZeRO-3 gathers the partitioned weight in every call (and every
recomputation), peft layers and quantised heads run their own forward, autocast is replayed by the checkpoint.
Under ZeRO-3 every rank must make the same number of head calls: ``min_chunks`` pads the number of chunks with
zero-weight calls on one token (:meth:`videoccam.model.videoccam_model.VideoCCAMModel._answer_loss` agrees on it
across ranks first).

Notation: n answer tokens, d LLM width, V vocabulary.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

__all__ = ["DEFAULT_LOSS_CHUNK_SIZE", "chunked_head_cross_entropy", "num_loss_chunks"]

# Answer tokens per head call by default (VideoCCAMModel.loss_chunk_size). Both paths hold about 12 bytes per
# logit at their peak (tools/bench_loss.py): for all answer tokens at once in the plain loss, for one chunk here
# (0.9 GiB with a 152k vocabulary). A [512, d] x [d, 152k] product still fills a GPU, so smaller chunks would
# cost more calls for little memory.
DEFAULT_LOSS_CHUNK_SIZE = 512


def num_loss_chunks(num_tokens: int, chunk_size: int) -> int:
    """Head calls :func:`chunked_head_cross_entropy` makes for ``num_tokens`` tokens (at least 1)."""
    return max(1, -(-num_tokens // chunk_size))


def _chunk_loss(head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Summed next-token cross-entropy of one chunk: ``head`` logits upcast to fp32, as the plain loss does."""
    return F.cross_entropy(head(hidden).float(), targets, reduction="sum")


def chunked_head_cross_entropy(
    head: nn.Module,
    hidden: torch.Tensor,
    targets: torch.Tensor,
    chunk_size: int,
    min_chunks: int = 1,
) -> torch.Tensor:
    """Sum over tokens of ``cross_entropy(head(hidden).float(), targets)``, computed ``chunk_size`` tokens at a time.

    Equal to the plain computation up to float rounding (summation order), in value and in every gradient
    (to ``hidden`` and to the head's weights if they train). Each chunk's logits but the last one's are
    recomputed in backward (non-reentrant activation checkpointing), so at most one chunk's logits, their
    log-softmax and their gradient exist at any time.

    Args:
        head: the LM head (``nn.Linear`` or any module mapping ``[n, d]`` to ``[n, V]`` logits).
        hidden: [n, d] hidden states at the answer positions (n may be 0).
        targets: [n] target token ids (every one is counted: select the answer positions before).
        chunk_size: tokens per head call.
        min_chunks: make at least this many head calls; the extra ones run on one token with weight 0 (ZeRO-3
            ranks must make the same calls; with n = 0 the one call keeps the head in the graph).

    Returns:
        The summed loss, a float32 scalar.

    Raises:
        ValueError: If ``chunk_size < 1`` or the shapes disagree.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if hidden.dim() != 2 or targets.shape != hidden.shape[:1]:
        raise ValueError(f"hidden must be [n, d] and targets [n], got {tuple(hidden.shape)} and {tuple(targets.shape)}")
    n = hidden.shape[0]
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, n, chunk_size):
        part = slice(start, start + chunk_size)
        if start + chunk_size >= n:
            # The last chunk's backward runs first, right when backward starts: keeping its tensors from the
            # forward costs no more memory than recomputing them then, and saves the recomputation (with a
            # single chunk this is the plain loss).
            total = total + _chunk_loss(head, hidden[part], targets[part])
        else:
            total = total + checkpoint(_chunk_loss, head, hidden[part], targets[part], use_reentrant=False)
    padding = max(min_chunks, 1) - (-(-n // chunk_size))
    if padding > 0:
        # zero-weight calls on one (real or zero) token, so the head is called and back-propagated through the
        # same number of times on every rank; the token's target is 0, any valid id would do
        # an empty batch still goes through the graph of `hidden` (its sum is 0), as the answer tokens would
        token = hidden[:1] if n else hidden.sum() * 0.0 + hidden.new_zeros(1, hidden.shape[1])
        target = targets.new_zeros(1)
        for _ in range(padding):
            total = total + checkpoint(_chunk_loss, head, token, target, use_reentrant=False) * 0.0
    return total
