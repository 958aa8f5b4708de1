"""The chunked LM-head cross-entropy equals the plain one in value and gradients, and pads head calls on request."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from videoccam.model.chunked_loss import chunked_head_cross_entropy, num_loss_chunks


def _setup(n: int, d: int = 12, vocab: int = 50, seed: int = 0):
    torch.manual_seed(seed)
    head = nn.Linear(d, vocab, bias=True).double()
    hidden = torch.randn(n, d, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, vocab, (n,))
    return head, hidden, targets


def _value_and_grads(loss, head, hidden):
    grads = torch.autograd.grad(loss * 1.7, [hidden, head.weight, head.bias], allow_unused=True)
    return [loss.detach()] + [g if g is not None else torch.zeros(()) for g in grads]


@pytest.mark.parametrize("n, chunk", [(10, 3), (10, 10), (10, 64), (1, 1)])
def test_equals_the_plain_loss_and_gradients(n, chunk):
    head, hidden, targets = _setup(n)
    plain = F.cross_entropy(head(hidden).float(), targets, reduction="sum")
    chunked = chunked_head_cross_entropy(head, hidden, targets, chunk)
    assert chunked.dtype == torch.float32
    for a, b in zip(_value_and_grads(chunked, head, hidden), _value_and_grads(plain, head, hidden)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_logits_are_recomputed_chunk_by_chunk_in_backward():
    head, hidden, targets = _setup(10)
    shapes = []
    head.register_forward_hook(lambda module, args, out: shapes.append(tuple(out.shape)))
    loss = chunked_head_cross_entropy(head, hidden, targets, 4)
    assert shapes == [(4, 50), (4, 50), (2, 50)]
    loss.backward()
    assert shapes[3:] == [(4, 50), (4, 50)]  # all but the last chunk again in backward (the last one's comes first)


def test_padding_calls_change_nothing_but_the_call_count():
    head, hidden, targets = _setup(5)
    calls = []
    head.register_forward_pre_hook(lambda *_: calls.append(1))
    reference = _value_and_grads(chunked_head_cross_entropy(head, hidden, targets, 4), head, hidden)
    calls.clear()
    padded = chunked_head_cross_entropy(head, hidden, targets, 4, min_chunks=5)
    assert len(calls) == 5  # 2 chunks + 3 padding calls
    for a, b in zip(_value_and_grads(padded, head, hidden), reference):
        torch.testing.assert_close(a, b)
    assert num_loss_chunks(5, 4) == 2 and num_loss_chunks(0, 4) == 1


def test_no_answer_tokens_gives_zero_through_the_head():
    head, hidden, targets = _setup(0)
    loss = chunked_head_cross_entropy(head, hidden, targets, 4)
    assert float(loss.detach()) == 0.0
    loss.backward()  # the head took part (ZeRO-3 / DDP ranks with answer tokens back-propagate through it)
    assert head.weight.grad is not None and float(head.weight.grad.abs().sum()) == 0.0


def test_errors():
    head, hidden, targets = _setup(4)
    with pytest.raises(ValueError, match="chunk_size must be >= 1, got 0"):
        chunked_head_cross_entropy(head, hidden, targets, 0)
    with pytest.raises(ValueError, match=r"hidden must be \[n, d\] and targets \[n\]"):
        chunked_head_cross_entropy(head, hidden, targets[:3], 2)
