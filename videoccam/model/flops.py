"""Model FLOPs of one training step of :class:`~videoccam.model.videoccam_model.VideoCCAMModel`, from batch shapes.

xtuner's ``ThroughputHook`` counts the LLM only; a Video-CCAM step also runs SigLIP on every frame and the CCAM
projector on every image or video, which at 16 frames per video is a large share of the work. The count here
covers the three parts, forward and backward, with these conventions (a matrix product [m, k] x [k, n] is
2mkn FLOPs):

* **matrix products only**: linear layers (LoRA adapters included), SigLIP's patch-embedding convolution and the
  attention products (QK^T and AV). Norms, activations, softmax, rotary embeddings, the loss and optimizer
  updates are left out (a few percent at most);
* **useful work**: the LLM's causal attention counts l(l+1)/2 query-key pairs per sample, the projector's
  cross-attention only the (query, key) pairs the CCAM mask lets through, its group-causal self-attention only
  the visible query pairs; padding (batch padding, the projector's frame padding) and the dummy frame of
  text-only batches are not counted. A kernel that computes masked-out pairs does more than this count;
* **model FLOPs, not hardware FLOPs**: activation checkpointing's recomputation is not counted (as in MFU);
* **the LM head on answer tokens only**, as ``VideoCCAMModel._answer_loss`` computes it;
* **backward** = weight gradients of trainable weights (1x their forward) + input gradients wherever a gradient
  has to flow (1x the forward of a linear layer, 2x of an attention product, whose two operands both need one).
  A gradient flows through a layer when a trainable weight sits in it or anywhere before it (SigLIP, then the
  projector, then the LLM); SigLIP layers after ``visual_select_layer`` (and its pooling head) never get one.
  The first layer with trainable weights is counted as if its input needed a gradient too (it does not: an
  over-count of that layer's q/k/v input gradients, about 1% of SigLIP's backward for the released recipe).

A projector of another code base (a released model's, :mod:`videoccam.model.released`) counts 0: its structure
is not known here.

Layer stacks are found by structure (the ``nn.ModuleList`` with ``config.num_hidden_layers`` entries) and linear
sizes read from the ``nn.Linear`` modules themselves (``in_features`` / ``out_features``, which DeepSpeed ZeRO-3
leaves intact), so fused projections, grouped-query attention and LoRA need no special cases.

Notation: f frames, p patches per frame, c vision width, q queries, e projector width, l LLM tokens of a sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn

from videoccam.model.hf.ccam_projector import CCAMProjectorConfig, query_frame_index

__all__ = ["StepFlopCounter", "StepFlops"]


@dataclass(frozen=True)
class StepFlops:
    """FLOPs of one step (forward + backward) by part."""

    vision: float
    projector: float
    llm: float

    @property
    def total(self) -> float:
        return self.vision + self.projector + self.llm


@dataclass(frozen=True)
class _Layer:
    """One transformer layer: per-token linear sizes (sum of in x out), trainable ones, and whether it trains."""

    linear: int
    trainable_linear: int

    @property
    def trains(self) -> bool:
        return self.trainable_linear > 0


def _linear_sizes(module: nn.Module) -> tuple[int, int]:
    """(sum of in x out over every nn.Linear in ``module``, the same over those whose weight trains)."""
    total = trainable = 0
    for m in module.modules():
        if isinstance(m, nn.Linear):
            size = m.in_features * m.out_features
            total += size
            if m.weight.requires_grad:
                trainable += size
    return total, trainable


def _layer_stack(model: nn.Module, num_layers: int, what: str) -> nn.ModuleList:
    """The ``nn.ModuleList`` of ``num_layers`` transformer layers inside ``model``."""
    stacks = [m for m in model.modules() if isinstance(m, nn.ModuleList) and len(m) == num_layers]
    if not stacks:
        raise ValueError(f"cannot find the {num_layers} layers of the {what} (no nn.ModuleList of that length)")
    return stacks[0]


def _layers(stack: nn.ModuleList) -> list[_Layer]:
    return [_Layer(*_linear_sizes(layer)) for layer in stack]


def _stack_flops(layers: Sequence[_Layer], tokens: float, attention: float, upstream: bool) -> tuple[float, float]:
    """(forward, backward) FLOPs of a layer stack run on ``tokens`` tokens with ``attention`` attention-product
    FLOPs per layer; ``upstream``: the stack's input needs a gradient."""
    forward = backward = 0.0
    for layer in layers:
        forward += 2 * tokens * layer.linear + attention
        upstream = upstream or layer.trains
        if upstream:
            backward += 2 * tokens * layer.linear + 2 * attention  # input gradients
        backward += 2 * tokens * layer.trainable_linear  # weight gradients
    return forward, backward


class StepFlopCounter:
    """Counts the model FLOPs of a training step of a ``VideoCCAMModel`` from its batch shapes (module docstring).

    The model's structure (layer sizes, which weights train) is read once, here; calls only do arithmetic.

    Args:
        model: the (unwrapped) ``VideoCCAMModel``.
        attention: count the attention products (QK^T, AV); False counts only products with weights (linear
            layers, convolutions), e.g. to compare with ``torch.utils.flop_counter``, which does not see
            ``scaled_dot_product_attention`` on CPU.

    Raises:
        ValueError: if the vision tower's or the LLM's layer stack cannot be found.
    """

    def __init__(self, model: nn.Module, attention: bool = True) -> None:
        self.attention = attention
        vis_cfg = model.visual_encoder.config
        self.patches = (vis_cfg.image_size // vis_cfg.patch_size) ** 2  # p
        self.vision_width = vis_cfg.hidden_size  # c
        stack = _layer_stack(model.visual_encoder, vis_cfg.num_hidden_layers, "vision tower")
        self.vision_layers = _layers(stack)
        # hidden_states[i] is the output of layer i (0 = embeddings): layers past it run forward only
        self.vision_used = model.visual_select_layer % (vis_cfg.num_hidden_layers + 1)
        in_layers = {id(p) for p in stack.parameters()}
        others = [p for p in model.visual_encoder.parameters() if id(p) not in in_layers]
        self.vision_upstream = any(p.requires_grad for p in others)  # unfrozen embeddings
        self.conv = sum(  # per output position: in_channels x kernel area x out_channels
            m.in_channels * m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
            for m in model.visual_encoder.modules() if isinstance(m, nn.Conv2d)
        )  # fmt: skip
        self.vision_head = self._pooling_head(model.visual_encoder)
        self.vision_trains = self.vision_upstream or any(layer.trains for layer in self.vision_layers[: self.vision_used])

        # a projector of another code base (a released one, videoccam.model.released) is not counted
        proj = getattr(model.projector, "config", None)
        self.projector_cfg = proj if isinstance(proj, CCAMProjectorConfig) else None
        self.projector_trains = any(p.requires_grad for p in model.projector.parameters())
        self._tau: dict[int, tuple[int, int]] = {}

        llm_cfg = model.llm.config
        base = model.llm.get_base_model() if hasattr(model.llm, "get_base_model") else model.llm
        self.llm_layers = _layers(_layer_stack(base, llm_cfg.num_hidden_layers, "LLM"))
        head_dim = getattr(llm_cfg, "head_dim", None) or llm_cfg.hidden_size // llm_cfg.num_attention_heads
        self.llm_attention_width = llm_cfg.num_attention_heads * head_dim
        head = base.get_output_embeddings()
        self.head_size = head.in_features * head.out_features
        self.head_trains = head.weight.requires_grad

    def _pooling_head(self, visual_encoder: nn.Module) -> float:
        """Forward FLOPs per frame of SigLIP's attention-pooling head (one probe query over p patches), if any."""
        flops = 0.0
        for module in visual_encoder.modules():
            mha = getattr(module, "attention", None)
            if isinstance(mha, nn.MultiheadAttention):
                e, p = mha.embed_dim, self.patches
                flops += 2 * e * e + 2 * p * 2 * e * e  # in-projections: q (the probe), k and v (p tokens)
                flops += 4 * p * e if self.attention else 0  # QK^T and AV
                flops += 2 * _linear_sizes(module)[0]  # out_proj and MLP, on the probe token
        return flops

    # -- parts ----------------------------------------------------------------------------------------------
    def vision(self, frames: int) -> float:
        """SigLIP FLOPs for ``frames`` frames (forward through every layer, backward through the used ones)."""
        if frames == 0:
            return 0.0
        p, c = self.patches, self.vision_width
        tokens = frames * p
        attention = frames * 4 * p * p * c if self.attention else 0  # QK^T and AV over p x p pairs, width c
        used, rest = self.vision_layers[: self.vision_used], self.vision_layers[self.vision_used :]
        forward, backward = _stack_flops(used, tokens, attention, self.vision_upstream)
        forward += _stack_flops(rest, tokens, attention, False)[0]
        forward += 2 * tokens * self.conv + frames * self.vision_head
        if self.vision_upstream:
            backward += 2 * tokens * self.conv  # weight gradient of an unfrozen patch embedding
        return forward + backward

    def _pairs(self, num_frames: int) -> tuple[int, int]:
        """(visible query-key pairs of the cross-attention in patches-of-a-frame units, visible query pairs)."""
        if num_frames not in self._tau:
            cfg = self.projector_cfg
            n = cfg.num_queries
            if not cfg.causal_mask:
                cross, selfp = n * num_frames, n * n
            else:
                tau = query_frame_index(n, num_frames, cfg.mask_mode)
                cross = int((tau + 1).sum())
                if cfg.self_attn == "causal" and num_frames > 1:
                    selfp = int((tau[None, :] <= tau[:, None]).sum())
                else:
                    selfp = n * n
            self._tau[num_frames] = (cross, selfp if cfg.self_attn != "none" else 0)
        return self._tau[num_frames]

    def projector(self, num_frames: Sequence[int]) -> float:
        """CCAM projector FLOPs for one media item per entry of ``num_frames`` (frames of each)."""
        cfg = self.projector_cfg
        if cfg is None:
            return 0.0
        n, e, c, p = cfg.num_queries, cfg.hidden_size, cfg.cross_hidden_size, self.patches
        use_self = cfg.self_attn != "none"
        total = 0.0
        for frames in num_frames:
            cross_pairs, self_pairs = self._pairs(int(frames))
            query_linear = 2 * n * ((4 * e * e if use_self else 0) + 2 * e * e + 3 * e * cfg.intermediate_size)
            kv_linear = 2 * frames * p * 2 * c * e  # cross-attention K and V of the frame features
            attention = 4 * e * (self_pairs + cross_pairs * p) if self.attention else 0
            forward = cfg.depth * (query_linear + kv_linear + attention) + 2 * n * e * cfg.output_size
            backward = 0.0
            if self.projector_trains or self.vision_trains:
                # input gradients: everything downstream of the (trainable) queries; K/V only if SigLIP trains
                backward += cfg.depth * (query_linear + 2 * attention) + 2 * n * e * cfg.output_size
                if self.vision_trains:
                    backward += cfg.depth * kv_linear
            if self.projector_trains:
                backward += cfg.depth * (query_linear + kv_linear) + 2 * n * e * cfg.output_size  # weights
            total += forward + backward
        return total

    def llm(self, lengths: Sequence[int], answer_tokens: int, with_media: bool) -> float:
        """LLM FLOPs for samples of ``lengths`` tokens (visual tokens included), the head on ``answer_tokens``.

        ``with_media``: the batch has images or videos (their embeddings need a gradient when the projector or
        SigLIP trains).
        """
        tokens = float(sum(lengths))
        pairs = sum(l * (l + 1) / 2 for l in lengths)  # causal attention
        attention = 4 * self.llm_attention_width * pairs if self.attention else 0
        upstream = with_media and (self.projector_trains or self.vision_trains)
        forward, backward = _stack_flops(self.llm_layers, tokens, attention, upstream)
        head = 2 * answer_tokens * self.head_size
        forward += head
        if upstream or any(layer.trains for layer in self.llm_layers):
            backward += head  # gradient of the last hidden states
        if self.head_trains:
            backward += head
        return forward + backward

    def __call__(self, num_frames: Sequence[int], lengths: Sequence[int], answer_tokens: int) -> StepFlops:
        """FLOPs of one step.

        Args:
            num_frames: frames of each image or video of the batch (an image is 1).
            lengths: LLM tokens of each sample, visual tokens included, padding excluded.
            answer_tokens: tokens whose loss is computed (``videoccam.engine.loops.count_loss_tokens``).
        """
        return StepFlops(
            vision=self.vision(int(sum(num_frames))),
            projector=self.projector(num_frames),
            llm=self.llm(lengths, answer_tokens, with_media=len(num_frames) > 0),
        )
