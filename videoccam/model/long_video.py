"""Long videos at bounded memory: frames stream through the vision tower and into the projector chunk by chunk.

``encode_frames`` + ``projector(...)`` hold every frame's features (1024 frames of SigLIP-so400m/384: 3.4 GB in
fp32) and, inside the projector, every frame's keys and values (6 GB more). :func:`encode_long_video` never holds
more than one chunk of anything: for each chunk of frames it runs the vision tower, projects that chunk's
features to keys and values, folds them into the projector's online softmax
(:meth:`~videoccam.model.hf.ccam_projector.CCAMProjector.forward_stream`) and drops them. Peak memory is set by
the chunk size, not by the number of frames, and time grows linearly with it (``tools/bench_long_video.py``
measures both). The result equals the usual path up to float rounding. Inference only (``no_grad``).

Imports only torch and the self-contained Hugging Face files, so it runs where the training stack is absent.

Notation: f frames, f_c frames per chunk, p patches per frame, c vision width, q queries, o LLM width.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import torch
from torch import nn

from videoccam.model.hf.ccam_projector import CCAMProjector

__all__ = ["encode_long_video", "select_layer_features"]


def _layer_list(visual_encoder: nn.Module) -> nn.ModuleList | None:
    """The encoder's list of transformer layers (``vision_model.encoder.layers``), if it has one."""
    model = getattr(visual_encoder, "vision_model", visual_encoder)
    layers = getattr(getattr(model, "encoder", None), "layers", None)
    num = getattr(getattr(visual_encoder, "config", None), "num_hidden_layers", None)
    return layers if isinstance(layers, nn.ModuleList) and len(layers) == num else None


def select_layer_features(visual_encoder: nn.Module, pixel_values: torch.Tensor, select_layer: int) -> torch.Tensor:
    """``hidden_states[select_layer]`` of ``pixel_values`` [f_c, 3, h, w] -> [f_c, p, c], keeping only that layer.

    ``output_hidden_states=True`` keeps every layer's output of the chunk until the forward ends (28 x 3.4 MB per
    SigLIP-so400m frame in fp32); where the tower's layers are reachable (``vision_model.encoder.layers``) a forward
    hook keeps only the selected one. Otherwise it falls back to ``output_hidden_states``.
    """
    layers = _layer_list(visual_encoder)
    if layers is None:
        return visual_encoder(pixel_values, output_hidden_states=True).hidden_states[select_layer]
    index = select_layer % (len(layers) + 1)  # hidden_states[0] is the embeddings' output
    if index == 0:
        return visual_encoder(pixel_values, output_hidden_states=True).hidden_states[0]
    captured: list[torch.Tensor] = []

    def keep(module: nn.Module, args: tuple, output: object) -> None:
        captured.append(output[0] if isinstance(output, tuple) else output)

    handle = layers[index - 1].register_forward_hook(keep)
    try:
        visual_encoder(pixel_values, output_hidden_states=False)
    finally:
        handle.remove()
    return captured[0]


@torch.no_grad()
def encode_long_video(
    visual_encoder: nn.Module,
    projector: CCAMProjector,
    pixel_chunks: Callable[[], Iterable[torch.Tensor]],
    num_frames: int,
    select_layer: int = -2,
) -> torch.Tensor:
    """The projector's tokens of one video whose frames arrive in chunks, at memory bounded in its length.

    Args:
        visual_encoder: the vision tower (SigLIP).
        projector: the CCAM projector.
        pixel_chunks: returns the video's normalised frames as consecutive ``[f_c, 3, h, w]`` chunks, in order
            (e.g. decoded and preprocessed chunk by chunk); called once per projector block (once for the
            released depth 1).
        num_frames: frames of the video (at most the projector's ``num_queries``).
        select_layer: ``hidden_states`` index fed to the projector.

    Returns:
        [1, q, o].
    """
    dtype = next(visual_encoder.parameters()).dtype
    device = next(visual_encoder.parameters()).device

    def feature_chunks() -> Iterator[torch.Tensor]:
        for chunk in pixel_chunks():
            yield select_layer_features(visual_encoder, chunk.to(device=device, dtype=dtype), select_layer)

    return projector.forward_stream(feature_chunks, num_frames)
