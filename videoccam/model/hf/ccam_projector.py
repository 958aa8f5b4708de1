# Copyright (c) videoccam contributors.
"""Causal Cross-Attention Mask (CCAM) projector for Video-CCAM.

This file is deliberately self-contained: it imports only ``torch``, ``transformers`` and the standard
library, because ``save_pretrained`` copies it next to the projector weights and
``AutoModel.from_pretrained(dir, trust_remote_code=True)`` loads it in isolation (no ``videoccam`` package).

Notation used for tensor shapes:
    b: videos (an image is a one-frame video)
    f: frames (``sum(num_frames)`` when frames of all videos are stacked, else frames of one video)
    p: patch tokens per frame (SigLIP-so400m/384: 729)
    k: keys of one (padded) video, ``max(num_frames) * p``
    q: learnable queries (``num_queries``)
    h: attention heads, d: head dimension
    c: ``cross_hidden_size`` (visual encoder width), e: ``hidden_size``, o: ``output_size`` (LLM width)

The CCAM mask (design.md section 2.1). With N queries, T frames and P patches per frame, keys are ordered
frame-major (key k belongs to frame k // P) and query i is assigned the frame

    floor (default): tau(i) = (i * T) // N
    ceil:            tau(i) = ceil((i + 1) * T / N) - 1

and may attend every key of frames 0..tau(i). The two modes agree whenever T divides N. Among queries,
group-causal self-attention lets query i attend query j iff tau(j) <= tau(i). All boolean masks in this file
follow the ``torch.nn.functional.scaled_dot_product_attention`` convention: **True means "may attend"**
(the opposite of ``nn.MultiheadAttention``'s boolean masks).

Cross-attention is computed in one of two exact ways (``CCAMProjectorConfig.cross_attention``):

* ``dense``: one ``scaled_dot_product_attention`` over all keys with the boolean CCAM mask;
* ``blocks``: block-sparse. The queries are cut into ``query_blocks`` contiguous blocks (at frame-group
  boundaries); block j attends only the keys of frames ``0..max tau`` of its queries (a prefix of the keys), with
  a mask only where some of its queries see fewer frames (the staircase inside the block). Keys no query of the
  block may see are never multiplied: about half of the dense FLOPs for a long video, the same softmax rows.

and, for videos too long to hold all frame features, :meth:`CCAMProjector.forward_stream` scans the frames chunk
by chunk with an online softmax (inference only; memory bounded in the number of frames).
"""

import operator
from typing import Callable, Iterable, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

__all__ = [
    "CROSS_ATTENTION_IMPLS",
    "MASK_MODES",
    "SELF_ATTN_MODES",
    "CCAMProjector",
    "CCAMProjectorConfig",
    "build_ccam_mask",
    "build_query_self_mask",
    "query_frame_index",
]

MASK_MODES = ("floor", "ceil")
SELF_ATTN_MODES = ("none", "causal", "full")
CROSS_ATTENTION_IMPLS = ("auto", "dense", "blocks")
# Query rows per online-softmax update of forward_stream: bounds its score tensor to h x 256 x (chunk keys).
_STREAM_QUERY_ROWS = 256
# "auto" takes the block-sparse path from this many query x key pairs per video: below it the extra SDPA calls
# cost more than the skipped blocks save (measured on CPU: 0.8x at 64 x 1024, 1.0x at 2^18 pairs, faster above).
_BLOCKS_MIN_PAIRS = 2**20


# --------------------------------------------------------------------------------------------------------------
# Masks (pure functions)
# --------------------------------------------------------------------------------------------------------------
def _check_mask_args(num_queries: int, num_frames: int, mode: str) -> None:
    if mode not in MASK_MODES:
        raise ValueError(f"Unknown CCAM mask mode {mode!r}; expected one of {MASK_MODES}.")
    if num_queries < 1:
        raise ValueError(f"num_queries must be >= 1, got {num_queries}.")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}.")
    if num_frames > num_queries:
        raise ValueError(
            f"num_frames={num_frames} exceeds num_queries={num_queries}: the CCAM mask assigns every query one "
            f"frame, so a video may have at most {num_queries} frames; sample fewer frames."
        )


def _batched_query_frame_index(num_queries: int, num_frames: torch.Tensor, mode: str) -> torch.Tensor:
    """Last visible frame of every query, for a batch of frame counts (no validation).

    Args:
        num_queries: N.
        num_frames: LongTensor[b], frames per video (each in 1..N).
        mode: "floor" or "ceil".

    Returns:
        LongTensor[b, q], non-decreasing along q, with values in 0..num_frames[b]-1.
    """
    i = torch.arange(num_queries, device=num_frames.device, dtype=torch.long)[None, :]  # [1, q]
    t = num_frames.to(torch.long)[:, None]  # [b, 1]
    if mode == "floor":
        return (i * t) // num_queries
    # ceil((i + 1) * T / N) frames visible -> last visible frame index is that minus one.
    return ((i + 1) * t + num_queries - 1) // num_queries - 1


def _cross_mask_from_index(
    tau: torch.Tensor, num_frames: torch.Tensor, tokens_per_frame: int, max_frames: int
) -> torch.Tensor:
    """CCAM cross-attention mask AND key-padding mask, vectorised over videos.

    Args:
        tau: LongTensor[b, q], last visible frame per query.
        num_frames: LongTensor[b], real frames per video (keys beyond ``num_frames[b] * p`` are padding).
        tokens_per_frame: p.
        max_frames: frames in the padded key sequence.

    Returns:
        BoolTensor[b, q, max_frames * p]; True = query may attend key.
    """
    key_frame = torch.arange(max_frames * tokens_per_frame, device=tau.device) // tokens_per_frame  # [k]
    causal = key_frame[None, None, :] <= tau[:, :, None]  # [b, q, k]
    # tau < num_frames already excludes padded keys; AND the padding mask anyway so the invariant is explicit.
    not_padding = key_frame[None, :] < num_frames.to(tau.device)[:, None]  # [b, k]
    return causal & not_padding[:, None, :]


def _self_mask_from_index(tau: torch.Tensor) -> torch.Tensor:
    """Group-causal query self-attention mask: [b, q, q], True at [., i, j] iff tau(j) <= tau(i)."""
    return tau[:, None, :] <= tau[:, :, None]


def _query_block_plan(tau: torch.Tensor, num_blocks: int) -> List[Tuple[int, int, int, bool]]:
    """Cut the queries into contiguous blocks for block-sparse cross-attention.

    Args:
        tau: LongTensor[b, q] (on the CPU), last visible frame per query and video, non-decreasing along q.
        num_blocks: Wanted number of blocks (fewer when the queries have fewer distinct windows).

    Returns:
        ``(q0, q1, frames, masked)`` per block: queries ``q0..q1-1`` attend the keys of frames ``0..frames-1``
        (``frames = 1 + max tau`` over the block and the batch); ``masked`` is False when every one of them, in
        every video, sees exactly those frames (then no mask is needed), True otherwise. Boundaries are placed at
        the starts of frame groups (where the batch's largest tau changes), so a block never splits a group.
    """
    num_queries = tau.shape[1]
    tau_max = tau.max(dim=0).values.tolist()  # [q], non-decreasing
    tau_min = tau.min(dim=0).values.tolist()
    starts = [i for i in range(1, num_queries) if tau_max[i] != tau_max[i - 1]]  # group starts after query 0
    bounds = {0, num_queries}
    for j in range(1, num_blocks):
        if not starts:
            break
        target = j * num_queries / num_blocks
        bounds.add(min(starts, key=lambda i: (abs(i - target), i)))
    bounds = sorted(bounds)
    plan = []
    for q0, q1 in zip(bounds[:-1], bounds[1:]):
        frames = tau_max[q1 - 1] + 1
        plan.append((q0, q1, frames, tau_min[q0] + 1 < frames))
    return plan


def block_sparse_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    tau: torch.Tensor,
    tokens_per_frame: int,
    plan: List[Tuple[int, int, int, bool]],
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """CCAM-masked attention computed only over each query block's visible prefix of keys.

    Equal (up to float rounding) to ``scaled_dot_product_attention(q, k, v, attn_mask=CCAM mask)``: every query's
    softmax covers exactly its visible keys in both; here keys past a block's last visible frame are skipped.

    Args:
        q: [b, h, q, d]; k, v: [b, h, k, d] with frame-major keys (padded videos allowed).
        tau: LongTensor[b or 1, q] on q's device, last visible frame per query.
        tokens_per_frame: p.
        plan: :func:`_query_block_plan` of the batch's tau.
        dropout_p: attention dropout probability.

    Returns:
        [b, h, q, d].
    """
    max_keys = max(frames for _, _, frames, _ in plan) * tokens_per_frame
    key_frame = torch.arange(max_keys, device=q.device) // tokens_per_frame  # [k']
    outs = []
    for q0, q1, frames, masked in plan:
        keys = frames * tokens_per_frame
        mask = (key_frame[None, None, :keys] <= tau[:, q0:q1, None])[:, None] if masked else None  # [b|1,1,q',k']
        outs.append(F.scaled_dot_product_attention(
            q[:, :, q0:q1], k[:, :, :keys], v[:, :, :keys], attn_mask=mask, dropout_p=dropout_p
        ))  # fmt: skip
    return outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)  # [b, h, q, d]


def query_frame_index(
    num_queries: int, num_frames: int, mode: str = "floor", device: Optional[Union[str, torch.device]] = None
) -> torch.Tensor:
    """Last frame each query may see (tau in design.md section 2.1).

    Args:
        num_queries: Number of learnable queries N.
        num_frames: Frames T of the video, 1 <= T <= N.
        mode: "floor" (tau(i) = (i*T)//N) or "ceil" (tau(i) = ceil((i+1)*T/N) - 1).
        device: Device of the returned tensor.

    Returns:
        LongTensor[num_queries]; non-decreasing, starts at 0 and ends at T - 1.

    Raises:
        ValueError: If ``mode`` is unknown, ``num_frames < 1`` or ``num_frames > num_queries``.
    """
    _check_mask_args(num_queries, num_frames, mode)
    frames = torch.tensor([num_frames], dtype=torch.long, device=device)
    return _batched_query_frame_index(num_queries, frames, mode)[0]


def build_ccam_mask(
    num_queries: int,
    num_frames: int,
    tokens_per_frame: int,
    mode: str = "floor",
    device: Optional[Union[str, torch.device]] = None,
) -> torch.Tensor:
    """Causal cross-attention mask of one video.

    Keys are ordered frame-major: key k belongs to frame ``k // tokens_per_frame``.

    Args:
        num_queries: Number of learnable queries N.
        num_frames: Frames T of the video, 1 <= T <= N (T = 1 for an image: plain cross-attention).
        tokens_per_frame: Patch tokens per frame P.
        mode: "floor": allowed[i, k] iff (k // P) <= (i*T)//N. "ceil": query i sees the first
            ceil((i+1)*T/N) frames, i.e. allowed[i, k] iff (k // P) < ceil((i+1)*T/N).
        device: Device of the returned tensor.

    Returns:
        BoolTensor[num_queries, num_frames * tokens_per_frame]. True at [i, k] means query i may attend key k
        (the ``scaled_dot_product_attention`` boolean convention, NOT ``nn.MultiheadAttention``'s).

    Raises:
        ValueError: If ``mode`` is unknown, ``num_frames < 1``, ``num_frames > num_queries`` or
            ``tokens_per_frame < 1``.
    """
    _check_mask_args(num_queries, num_frames, mode)
    if tokens_per_frame < 1:
        raise ValueError(f"tokens_per_frame must be >= 1, got {tokens_per_frame}.")
    frames = torch.tensor([num_frames], dtype=torch.long, device=device)
    tau = _batched_query_frame_index(num_queries, frames, mode)
    return _cross_mask_from_index(tau, frames, tokens_per_frame, num_frames)[0]


def build_query_self_mask(
    num_queries: int, num_frames: int, mode: str = "floor", device: Optional[Union[str, torch.device]] = None
) -> torch.Tensor:
    """Group-causal self-attention mask among the queries of one video.

    Args:
        num_queries: Number of learnable queries N.
        num_frames: Frames T of the video, 1 <= T <= N.
        mode: CCAM mask mode, see :func:`query_frame_index`.
        device: Device of the returned tensor.

    Returns:
        BoolTensor[num_queries, num_queries]; True at [i, j] means query i may attend query j, which holds iff
        tau(j) <= tau(i), so no query sees information from frames beyond its own window.

    Raises:
        ValueError: As :func:`query_frame_index`.
    """
    tau = query_frame_index(num_queries, num_frames, mode, device=device)
    return _self_mask_from_index(tau[None])[0]


# --------------------------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------------------------
def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class CCAMProjectorConfig(PretrainedConfig):
    """Configuration of :class:`CCAMProjector`. Defaults are the released Video-CCAM 7B projector.

    Args:
        num_queries: Learnable queries N = LLM tokens per image or video.
        hidden_size: Width e of the queries and of attention.
        num_heads: Attention heads; must divide ``hidden_size``.
        cross_hidden_size: Width c of the visual features (K/V input), e.g. 1152 for SigLIP-so400m.
        intermediate_size: SwiGLU MLP hidden width.
        output_size: Output width o, the LLM hidden size.
        depth: Number of blocks (self-attention, cross-attention, MLP).
        dropout: Dropout after each sub-layer, in [0, 1).
        attention_dropout: Dropout on attention probabilities (training only), in [0, 1).
        layer_norm_eps: LayerNorm epsilon.
        mask_mode: CCAM mask variant, "floor" or "ceil" (design.md 2.1); saved so conversion and inference agree.
        self_attn: Self-attention among queries: "none" (no self-attention layer), "causal" (group-causal) or
            "full" (unmasked; lets early queries see late frames, so it breaks CCAM causality).
        initializer_range: Std of the normal init of queries and linear weights.
        causal_mask: True (default) for the CCAM mask: query i sees frames 0..tau(i) and the query self-attention
            is group-causal. False turns both off for ablations: every query cross-attends every frame and the
            queries attend each other freely, so the output no longer depends on frame order (there is no
            temporal position embedding). Saved with the weights, like ``mask_mode``.
        cross_attention: How the masked cross-attention is computed (both exact, see the module docstring):
            "dense" (one masked SDPA over all keys), "blocks" (block-sparse: only the visible query-block x
            frame prefixes) or "auto" ("blocks" when the CCAM mask is on, a video has several frames and there
            are at least 2**20 query x key pairs per video, e.g. 16 SigLIP frames and 1024 queries; measured
            faster there on CPU, README "Benchmarks"). Runtime choice; it does not change the weights.
        query_blocks: Query blocks of the "blocks" cross-attention. More blocks skip more masked keys but give
            each SDPA call fewer queries (on CPU, calls under about 192 queries run a slower tiling).
        frame_chunk_size: Frames per online-softmax step of :meth:`CCAMProjector.forward_stream` (long videos);
            None there means 8. Runtime choice; it does not change the weights.
        **kwargs: Passed to ``PretrainedConfig``.

    Raises:
        ValueError: If a value is out of range; the message names the field and the value.
    """

    model_type = "ccam_projector"

    def __init__(
        self,
        num_queries: int = 1024,
        hidden_size: int = 1024,
        num_heads: int = 16,
        cross_hidden_size: int = 1152,
        intermediate_size: int = 4096,
        output_size: int = 3584,
        depth: int = 1,
        dropout: float = 0.1,
        attention_dropout: float = 0.1,
        layer_norm_eps: float = 1e-5,
        mask_mode: str = "floor",
        self_attn: str = "causal",
        initializer_range: float = 0.02,
        frame_chunk_size: Optional[int] = None,
        causal_mask: bool = True,
        cross_attention: str = "auto",
        query_blocks: int = 4,
        **kwargs,
    ):
        for name, value in (
            ("num_queries", num_queries),
            ("hidden_size", hidden_size),
            ("num_heads", num_heads),
            ("cross_hidden_size", cross_hidden_size),
            ("intermediate_size", intermediate_size),
            ("output_size", output_size),
            ("depth", depth),
        ):
            if not _is_int(value) or value < 1:
                raise ValueError(f"CCAMProjectorConfig.{name} must be a positive integer, got {value!r}.")
        if hidden_size % num_heads != 0:
            raise ValueError(
                f"CCAMProjectorConfig.hidden_size={hidden_size} is not divisible by num_heads={num_heads}."
            )
        for name, value in (("dropout", dropout), ("attention_dropout", attention_dropout)):
            if not 0.0 <= float(value) < 1.0:
                raise ValueError(f"CCAMProjectorConfig.{name} must be in [0, 1), got {value!r}.")
        if not float(layer_norm_eps) > 0.0:
            raise ValueError(f"CCAMProjectorConfig.layer_norm_eps must be > 0, got {layer_norm_eps!r}.")
        if not float(initializer_range) >= 0.0:
            raise ValueError(f"CCAMProjectorConfig.initializer_range must be >= 0, got {initializer_range!r}.")
        if mask_mode not in MASK_MODES:
            raise ValueError(f"CCAMProjectorConfig.mask_mode={mask_mode!r} is unknown; expected one of {MASK_MODES}.")
        if self_attn not in SELF_ATTN_MODES:
            raise ValueError(
                f"CCAMProjectorConfig.self_attn={self_attn!r} is unknown; expected one of {SELF_ATTN_MODES}."
            )
        if not isinstance(causal_mask, bool):
            raise ValueError(f"CCAMProjectorConfig.causal_mask must be True or False, got {causal_mask!r}.")
        if cross_attention not in CROSS_ATTENTION_IMPLS:
            raise ValueError(
                f"CCAMProjectorConfig.cross_attention={cross_attention!r} is unknown; expected one of "
                f"{CROSS_ATTENTION_IMPLS}."
            )
        if not _is_int(query_blocks) or query_blocks < 1:
            raise ValueError(f"CCAMProjectorConfig.query_blocks must be a positive integer, got {query_blocks!r}.")
        if frame_chunk_size is not None and (not _is_int(frame_chunk_size) or frame_chunk_size < 1):
            raise ValueError(
                f"CCAMProjectorConfig.frame_chunk_size must be None or a positive integer, got {frame_chunk_size!r}."
            )
        self.num_queries = num_queries
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.cross_hidden_size = cross_hidden_size
        self.intermediate_size = intermediate_size
        self.output_size = output_size
        self.depth = depth
        self.dropout = float(dropout)
        self.attention_dropout = float(attention_dropout)
        self.layer_norm_eps = float(layer_norm_eps)
        self.mask_mode = mask_mode
        self.self_attn = self_attn
        self.initializer_range = float(initializer_range)
        self.frame_chunk_size = frame_chunk_size
        self.causal_mask = causal_mask
        self.cross_attention = cross_attention
        self.query_blocks = query_blocks
        super().__init__(**kwargs)


# --------------------------------------------------------------------------------------------------------------
# Modules
# --------------------------------------------------------------------------------------------------------------
class CCAMAttention(nn.Module):
    """Multi-head attention from ``hidden_size``-wide queries to ``kv_size``-wide inputs, with biases.

    Args:
        hidden_size: Query width e (also the attention and output width).
        kv_size: Width of the key/value input (e for self-attention, c for cross-attention).
        num_heads: Heads h; d = e // h.
        attention_dropout: Dropout probability on attention probabilities (training only).
    """

    def __init__(self, hidden_size: int, kv_size: int, num_heads: int, attention_dropout: float):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.attention_dropout = attention_dropout
        self.q_proj = nn.Linear(hidden_size, hidden_size)
        self.k_proj = nn.Linear(kv_size, hidden_size)
        self.v_proj = nn.Linear(kv_size, hidden_size)
        self.o_proj = nn.Linear(hidden_size, hidden_size)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.num_heads, self.head_dim).transpose(1, 2)  # [b, h, n, d]

    def _merge_heads(self, x: torch.Tensor) -> torch.Tensor:
        b, _, n, _ = x.shape
        return x.transpose(1, 2).reshape(b, n, self.num_heads * self.head_dim)  # [b, n, e]

    def forward(
        self, hidden_states: torch.Tensor, kv_states: torch.Tensor, attn_mask: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """Dense attention via ``scaled_dot_product_attention``.

        Args:
            hidden_states: [b, q, e] queries (already normalised).
            kv_states: [b, k, kv_size] keys/values input.
            attn_mask: None (attend everything) or BoolTensor broadcastable to [b, 1, q, k], True = attend.

        Returns:
            [b, q, e].
        """
        q = self._split_heads(self.q_proj(hidden_states))  # [b, h, q, d]
        k = self._split_heads(self.k_proj(kv_states))  # [b, h, k, d]
        v = self._split_heads(self.v_proj(kv_states))  # [b, h, k, d]
        dropout_p = self.attention_dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p)
        return self.o_proj(self._merge_heads(out))

    def forward_blocks(
        self,
        hidden_states: torch.Tensor,
        kv_states: torch.Tensor,
        tau: torch.Tensor,
        tokens_per_frame: int,
        plan: List[Tuple[int, int, int, bool]],
    ) -> torch.Tensor:
        """Block-sparse CCAM cross-attention: each query block attends only the frames its queries may see.

        Equal (up to float rounding) to :meth:`forward` with the CCAM mask: every query's softmax runs over exactly
        its visible keys in both, but here the keys of frames beyond a block's last visible frame are never
        multiplied. K/V are projected once for all keys and each block takes a prefix view of them, so the
        module calls (q/k/v/o projections) are the same whatever the plan (DeepSpeed ZeRO-3 needs that).

        Args:
            hidden_states: [b, q, e] queries (already normalised).
            kv_states: [b, f*p, c] frame features, frame-major, padded to the longest video.
            tau: LongTensor[b or 1, q] (on the device), last visible frame per query (1 row when all videos have
                the same frame count).
            tokens_per_frame: p.
            plan: :func:`_query_block_plan` of the batch's tau.

        Returns:
            [b, q, e].
        """
        q = self._split_heads(self.q_proj(hidden_states))  # [b, h, q, d]
        k = self._split_heads(self.k_proj(kv_states))  # [b, h, k, d]
        v = self._split_heads(self.v_proj(kv_states))  # [b, h, k, d]
        dropout_p = self.attention_dropout if self.training else 0.0
        out = block_sparse_attention(q, k, v, tau, tokens_per_frame, plan, dropout_p)  # [b, h, q, d]
        return self.o_proj(self._merge_heads(out))

    def forward_stream(
        self, hidden_states: torch.Tensor, feature_chunks: Iterable[torch.Tensor], tau: torch.Tensor
    ) -> Tuple[torch.Tensor, int]:
        """CCAM cross-attention of one video as an online-softmax scan over chunks of its frames (inference).

        Each chunk's keys and values are projected, folded into running softmax statistics of the queries that
        see its frames, and dropped, so memory is bounded by the chunk size, not by the number of frames. Queries
        whose window ends before a chunk skip it. Equal to :meth:`forward` with the CCAM mask up to float rounding.

        Args:
            hidden_states: [1, q, e] queries (already normalised).
            feature_chunks: [f_c, p, c] features of consecutive frames, in order (any chunk sizes).
            tau: LongTensor[q], last visible frame per query.

        Returns:
            ([1, q, e], number of frames scanned).
        """
        _, num_q, _ = hidden_states.shape
        q = self._split_heads(self.q_proj(hidden_states)) * (self.head_dim**-0.5)  # [1, h, q, d]
        # Running softmax statistics in at least float32 whatever the model dtype (they accumulate over chunks).
        stat_dtype = torch.promote_types(q.dtype, torch.float32)
        stats = dict(dtype=stat_dtype, device=q.device)
        m = torch.full((1, self.num_heads, num_q, 1), float("-inf"), **stats)
        denom = torch.zeros((1, self.num_heads, num_q, 1), **stats)
        acc = torch.zeros(q.shape, **stats)
        dropout_p = self.attention_dropout if self.training else 0.0
        tau = tau.to(q.device)
        tau_list = tau.tolist()
        f0 = 0
        for chunk in feature_chunks:
            f_c, p = chunk.shape[0], chunk.shape[1]
            kv = chunk.to(device=q.device, dtype=q.dtype).reshape(1, f_c * p, -1)
            k = self._split_heads(self.k_proj(kv))  # [1, h, kc, d]
            v = self._split_heads(self.v_proj(kv))  # [1, h, kc, d]
            key_frame = f0 + torch.arange(f_c * p, device=q.device) // p  # [kc]
            # queries with tau < f0 see none of this chunk; tau is non-decreasing, so they are a prefix
            first = next((i for i, t in enumerate(tau_list) if t >= f0), num_q)
            for r0 in range(first, num_q, _STREAM_QUERY_ROWS):
                r1 = min(r0 + _STREAM_QUERY_ROWS, num_q)
                scores = torch.matmul(q[:, :, r0:r1], k.transpose(-1, -2)).to(stat_dtype)  # [1, h, r, kc]
                if tau_list[r0] < f0 + f_c - 1:  # some of these rows stop inside the chunk
                    visible = key_frame[None, :] <= tau[r0:r1, None]  # [r, kc]
                    scores.masked_fill_(~visible, float("-inf"))
                # every row here sees frame f0, so each row has a finite maximum: no -inf - -inf
                m_new = torch.maximum(m[:, :, r0:r1], scores.amax(dim=-1, keepdim=True))
                alpha = torch.exp(m[:, :, r0:r1] - m_new)  # [1, h, r, 1]
                probs = scores.sub_(m_new).exp_()  # [1, h, r, kc]
                denom[:, :, r0:r1] = denom[:, :, r0:r1] * alpha + probs.sum(dim=-1, keepdim=True)
                # dropout on unnormalised probabilities == dropout on the softmax (normalising is a row scale)
                probs = F.dropout(probs, p=dropout_p, training=dropout_p > 0.0)
                acc[:, :, r0:r1] = acc[:, :, r0:r1] * alpha + torch.matmul(probs.to(v.dtype), v).to(stat_dtype)
                m[:, :, r0:r1] = m_new
            f0 += f_c
        out = (acc / denom).to(q.dtype)  # [1, h, q, d]
        return self.o_proj(self._merge_heads(out)), f0


class CCAMMLP(nn.Module):
    """SwiGLU MLP: down(silu(gate(x)) * up(x)), with biases."""

    def __init__(self, hidden_size: int, intermediate_size: int):
        super().__init__()
        self.gate_proj = nn.Linear(hidden_size, intermediate_size)
        self.up_proj = nn.Linear(hidden_size, intermediate_size)
        self.down_proj = nn.Linear(intermediate_size, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class CCAMBlock(nn.Module):
    """Pre-norm block: [self-attention among queries] -> masked cross-attention to frames -> SwiGLU MLP.

    Each sub-layer is ``x + dropout(sublayer(norm(x)))``.
    """

    def __init__(self, config: CCAMProjectorConfig):
        super().__init__()
        e, eps = config.hidden_size, config.layer_norm_eps
        self.use_self_attn = config.self_attn != "none"
        if self.use_self_attn:
            self.self_attn_norm = nn.LayerNorm(e, eps=eps)
            self.self_attn = CCAMAttention(e, e, config.num_heads, config.attention_dropout)
        self.cross_attn_norm = nn.LayerNorm(e, eps=eps)
        self.cross_attn = CCAMAttention(e, config.cross_hidden_size, config.num_heads, config.attention_dropout)
        self.mlp_norm = nn.LayerNorm(e, eps=eps)
        self.mlp = CCAMMLP(e, config.intermediate_size)
        self.dropout = nn.Dropout(config.dropout)

    def forward(
        self,
        hidden_states: torch.Tensor,
        visual_states: torch.Tensor,
        cross_mask: Optional[torch.Tensor],
        self_mask: Optional[torch.Tensor],
        tau: torch.Tensor,
        tokens_per_frame: int,
        plan: Optional[List[Tuple[int, int, int, bool]]],
    ) -> torch.Tensor:
        """Run the block.

        Args:
            hidden_states: [b, q, e].
            visual_states: [b, f*p, c] padded frame features.
            cross_mask: None or Bool[b or 1, 1, q, f*p] (True = attend); used by the dense cross-attention.
            self_mask: None or Bool[b or 1, 1, q, q] (True = attend).
            tau: Long[b or 1, q] last visible frame per query (used by the block-sparse cross-attention).
            tokens_per_frame: p.
            plan: None for dense cross-attention, else the query blocks of the block-sparse one.

        Returns:
            [b, q, e].
        """
        hidden_states = self._self_attention(hidden_states, self_mask)
        x = self.cross_attn_norm(hidden_states)
        if plan is None:
            attn = self.cross_attn(x, visual_states, cross_mask)
        else:
            attn = self.cross_attn.forward_blocks(x, visual_states, tau, tokens_per_frame, plan)
        return self._mlp(hidden_states + self.dropout(attn))

    def forward_stream(
        self,
        hidden_states: torch.Tensor,
        feature_chunks: Iterable[torch.Tensor],
        self_mask: Optional[torch.Tensor],
        tau: torch.Tensor,
    ) -> Tuple[torch.Tensor, int]:
        """The block for one video whose frame features arrive in chunks (see :meth:`CCAMAttention.forward_stream`).

        Returns:
            ([1, q, e], number of frames scanned).
        """
        hidden_states = self._self_attention(hidden_states, self_mask)
        attn, frames = self.cross_attn.forward_stream(self.cross_attn_norm(hidden_states), feature_chunks, tau)
        return self._mlp(hidden_states + self.dropout(attn)), frames

    def _self_attention(self, hidden_states: torch.Tensor, self_mask: Optional[torch.Tensor]) -> torch.Tensor:
        if not self.use_self_attn:
            return hidden_states
        x = self.self_attn_norm(hidden_states)
        return hidden_states + self.dropout(self.self_attn(x, x, self_mask))

    def _mlp(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return hidden_states + self.dropout(self.mlp(self.mlp_norm(hidden_states)))


class CCAMProjector(PreTrainedModel):
    """Video-CCAM projector: maps T frames of P visual tokens to a fixed number of LLM tokens.

    learnable queries [q, e] -> ``depth`` x CCAMBlock -> LayerNorm -> Linear(e -> o). Temporal order enters only
    through the causal cross-attention mask (no temporal position embedding).

    Args:
        config: :class:`CCAMProjectorConfig`.
    """

    config_class = CCAMProjectorConfig
    _auto_class = "AutoModel"
    base_model_prefix = ""
    main_input_name = "visual_features"
    supports_gradient_checkpointing = True
    _no_split_modules = ["CCAMBlock"]

    def __init__(self, config: CCAMProjectorConfig):
        super().__init__(config)
        self.queries = nn.Parameter(torch.empty(config.num_queries, config.hidden_size))
        self.blocks = nn.ModuleList([CCAMBlock(config) for _ in range(config.depth)])
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.output_proj = nn.Linear(config.hidden_size, config.output_size)
        self.gradient_checkpointing = False
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, CCAMProjector):
            nn.init.normal_(module.queries, mean=0.0, std=std)

    def _frames_list(self, num_frames: Union[Sequence[int], torch.Tensor], total: int) -> List[int]:
        if isinstance(num_frames, torch.Tensor):
            if num_frames.dim() != 1 or num_frames.is_floating_point():
                raise ValueError(
                    f"num_frames must be a 1-D integer tensor or a list of ints, got a tensor of shape "
                    f"{tuple(num_frames.shape)} and dtype {num_frames.dtype}."
                )
            frames = [int(t) for t in num_frames.tolist()]
        else:
            try:
                frames = [operator.index(t) for t in num_frames]
            except TypeError as e:
                raise ValueError(f"num_frames must be a list of ints, got {num_frames!r}.") from e
        if len(frames) == 0:
            raise ValueError("num_frames is empty: the projector needs at least one video.")
        bad = [t for t in frames if t < 1 or t > self.config.num_queries]
        if bad:
            raise ValueError(
                f"Every video needs 1..num_queries={self.config.num_queries} frames, got num_frames={frames} "
                f"(offending: {bad})."
            )
        if sum(frames) != total:
            raise ValueError(
                f"sum(num_frames)={sum(frames)} (num_frames={frames}) does not match visual_features.shape[0]="
                f"{total}; visual_features must stack the frames of all videos along dim 0."
            )
        return frames

    def _pad_videos(self, visual_features: torch.Tensor, frames: List[int]) -> torch.Tensor:
        """[f_total, p, c] stacked frames -> [b, max_f * p, c] zero-padded, frame-major keys (no python loop)."""
        total, p, c = visual_features.shape
        b, max_frames = len(frames), max(frames)
        if b == 1:
            return visual_features.reshape(1, total * p, c)
        device = visual_features.device
        counts = torch.tensor(frames, device=device)
        video_idx = torch.repeat_interleave(torch.arange(b, device=device), counts)  # [f_total]
        starts = torch.cumsum(counts, 0) - counts  # [b]
        frame_idx = torch.arange(total, device=device) - starts[video_idx]  # [f_total]
        padded = visual_features.new_zeros(b, max_frames, p, c)
        padded[video_idx, frame_idx] = visual_features
        return padded.view(b, max_frames * p, c)

    def _frame_index(self, frames: List[int], device: Union[str, torch.device]) -> torch.Tensor:
        """tau [b, q] of a batch (every query sees the whole video when ``causal_mask`` is off)."""
        frames_t = torch.tensor(frames, device=device)
        if self.config.causal_mask:
            return _batched_query_frame_index(self.config.num_queries, frames_t, self.config.mask_mode)  # [b, q]
        # ablation: every query sees every frame of its video (padding stays masked)
        return (frames_t - 1)[:, None].expand(-1, self.config.num_queries).contiguous()  # [b, q]

    def _self_mask(self, tau: torch.Tensor, max_frames: int) -> Optional[torch.Tensor]:
        if self.config.causal_mask and self.config.self_attn == "causal" and max_frames > 1:
            return _self_mask_from_index(tau)[:, None]  # [b|1, 1, q, q]
        return None

    def forward(
        self,
        visual_features: torch.Tensor,
        num_frames: Union[Sequence[int], torch.Tensor],
        cross_attention: Optional[str] = None,
    ) -> torch.Tensor:
        """Project the frames of a batch of videos to ``num_queries`` LLM tokens each.

        Args:
            visual_features: [f, p, c] frame features of all videos stacked along dim 0 (video 0's frames first,
                in temporal order). Cast to the projector's dtype.
            num_frames: Frames per video, list[int] or 1-D integer tensor of length b; ``sum == f``. Images are
                one-frame videos.
            cross_attention: Overrides ``config.cross_attention`` for this call ("auto", "dense" or "blocks").

        Returns:
            [b, q, o].

        Raises:
            ValueError: If shapes disagree (the message names both values) or a video has 0 or more than
                ``num_queries`` frames.
        """
        if visual_features.dim() != 3 or visual_features.shape[-1] != self.config.cross_hidden_size:
            raise ValueError(
                f"visual_features must have shape [frames, patches, cross_hidden_size="
                f"{self.config.cross_hidden_size}], got {tuple(visual_features.shape)}."
            )
        frames = self._frames_list(num_frames, visual_features.shape[0])
        impl = self.config.cross_attention if cross_attention is None else cross_attention
        if impl not in CROSS_ATTENTION_IMPLS:
            raise ValueError(f"cross_attention must be one of {CROSS_ATTENTION_IMPLS}, got {impl!r}.")

        b, p = len(frames), visual_features.shape[1]
        max_frames = max(frames)
        dtype, device = self.queries.dtype, self.queries.device
        visual_states = self._pad_videos(visual_features.to(device=device, dtype=dtype), frames)  # [b, f*p, c]

        uniform = all(t == frames[0] for t in frames)
        # broadcast one row over the batch when every video has the same frame count
        tau = self._frame_index(frames[:1] if uniform else frames, device)  # [b|1, q]
        if impl == "auto":
            large = self.config.num_queries * max_frames * p >= _BLOCKS_MIN_PAIRS
            impl = "blocks" if self.config.causal_mask and max_frames > 1 and large else "dense"
        plan = cross_mask = None
        if impl == "blocks":
            # planned on the CPU from the frame counts: no device sync
            plan = _query_block_plan(self._frame_index(frames, "cpu"), self.config.query_blocks)
        elif max_frames > 1 and not (uniform and not self.config.causal_mask):  # images / unmasked: no mask
            mask_frames = torch.tensor(frames[:1] if uniform else frames, device=device)
            cross_mask = _cross_mask_from_index(tau, mask_frames, p, max_frames)[:, None]  # [b|1, 1, q, k]
        self_mask = self._self_mask(tau, max_frames)

        hidden_states = self.queries[None].expand(b, -1, -1)  # [b, q, e]
        for block in self.blocks:
            args = (hidden_states, visual_states, cross_mask, self_mask, tau, p, plan)
            if self.gradient_checkpointing and self.training:
                hidden_states = self._gradient_checkpointing_func(block.__call__, *args)
            else:
                hidden_states = block(*args)
        return self.output_proj(self.norm(hidden_states))  # [b, q, o]

    def forward_stream(
        self,
        feature_chunks: Union[torch.Tensor, Iterable[torch.Tensor], Callable[[], Iterable[torch.Tensor]]],
        num_frames: int,
    ) -> torch.Tensor:
        """Project one video whose frame features arrive chunk by chunk, at memory bounded in its length.

        For videos too long to hold all frames' features (or keys and values): each chunk of frame features is
        projected to keys and values, folded into an online softmax (:meth:`CCAMAttention.forward_stream`) and
        released. Equal to :meth:`forward` up to float rounding. Inference only: under autograd every chunk would
        be kept for backward anyway, so it refuses to run with gradients enabled.

        Args:
            feature_chunks: the video's frame features as consecutive ``[f_c, p, c]`` chunks, in temporal order.
                With ``depth > 1`` every block scans all frames, so pass a callable returning a fresh iterable per
                call (e.g. one that re-encodes the frames); a plain iterable is enough for ``depth == 1``. A
                ``[f, p, c]`` tensor is split into chunks of ``config.frame_chunk_size`` frames (default 8).
            num_frames: Frames of the video (1..num_queries); the chunks must add up to it.

        Returns:
            [1, q, o].

        Raises:
            RuntimeError: If called with gradients enabled.
            ValueError: If ``num_frames`` is out of range, the chunks do not add up to it, or a plain iterable is
                given with ``depth > 1``.
        """
        if torch.is_grad_enabled():
            raise RuntimeError("forward_stream is an inference path; call it under torch.no_grad()")
        frames = self._frames_list([num_frames], num_frames)
        if isinstance(feature_chunks, torch.Tensor):
            chunk = self.config.frame_chunk_size or 8
            tensor = feature_chunks
            feature_chunks = lambda: tensor.split(chunk)  # noqa: E731
        if not callable(feature_chunks):
            if self.config.depth > 1:
                raise ValueError(
                    f"depth={self.config.depth}: every block scans all frames, so forward_stream needs a callable "
                    "that returns the chunks again for each block, not a one-shot iterable"
                )
            chunks = feature_chunks
            feature_chunks = lambda: chunks  # noqa: E731
        device = self.queries.device
        tau = self._frame_index(frames, device)  # [1, q]
        self_mask = self._self_mask(tau, num_frames)
        hidden_states = self.queries[None]  # [1, q, e]
        for block in self.blocks:
            hidden_states, seen = block.forward_stream(hidden_states, feature_chunks(), self_mask, tau[0])
            if seen != num_frames:
                raise ValueError(f"the feature chunks held {seen} frames but num_frames={num_frames}")
        return self.output_proj(self.norm(hidden_states))  # [1, q, o]


# Writes ``auto_map`` into config.json on save_pretrained so AutoConfig / AutoModel with trust_remote_code
# find these classes in the copy of this file saved beside the weights.
CCAMProjectorConfig.register_for_auto_class()
CCAMProjector.register_for_auto_class("AutoModel")
