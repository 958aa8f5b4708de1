"""Upstream's v1.0 loader and forward, the reference "upstream way" of loading an xtuner-layout release.

Adapted from QQ-MM/Video-CCAM ``model/videoccam.py`` at tag v1.0 (commit ba4eb7d7d6432c1d81cb5cab3a2bfc33c61fed8d):
``VideoCCAM.__init__`` (base LLM + ``PeftModel.from_pretrained(llm, "llm_adapter")``, ``SiglipVisionModel`` +
``PeftModel.from_pretrained(visual_encoder, "visual_encoder_adapter")``, ``AutoModel.from_pretrained("projector",
trust_remote_code=True)``), ``forward_vision`` (``hidden_states[-2]``, all patches) and
``prepare_inputs_labels_for_multimodal`` for one sample (``IMAGE_TOKEN_INDEX`` replaced by the projector's
tokens). Differences: float32 on the CPU with SDPA instead of flash-attention on a GPU, no ``device_map``, and
logits instead of ``generate``.
"""

from __future__ import annotations

import os.path as osp

import torch
from peft import PeftModel
from transformers import AutoModel, AutoModelForCausalLM, SiglipVisionModel

IMAGE_TOKEN_INDEX = -200


class UpstreamVideoCCAMv10:
    def __init__(self, model_path: str, llm_name_or_path: str, visual_encoder_name_or_path: str,
                 torch_dtype: torch.dtype = torch.float32, visual_select_layer: int = -2) -> None:  # fmt: skip
        self.visual_select_layer = visual_select_layer
        self.llm = AutoModelForCausalLM.from_pretrained(
            llm_name_or_path, attn_implementation="sdpa", torch_dtype=torch_dtype
        )
        if osp.exists(adapter_path := osp.join(model_path, "llm_adapter")):
            self.llm = PeftModel.from_pretrained(self.llm, adapter_path)
        self.visual_encoder = SiglipVisionModel.from_pretrained(visual_encoder_name_or_path, torch_dtype=torch_dtype)
        if osp.exists(adapter_path := osp.join(model_path, "visual_encoder_adapter")):
            self.visual_encoder = PeftModel.from_pretrained(self.visual_encoder, adapter_path)
        self.projector = AutoModel.from_pretrained(
            osp.join(model_path, "projector"), torch_dtype=torch_dtype, trust_remote_code=True
        )
        for module in (self.llm, self.visual_encoder, self.projector):
            module.eval()

    def forward_vision(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.visual_encoder(pixel_values, output_hidden_states=True).hidden_states[self.visual_select_layer]

    @torch.no_grad()
    def logits(self, input_ids: list[int], pixel_values: torch.Tensor, split_sizes: list[int]) -> torch.Tensor:
        """Logits [1, l', vocab] of one prompt whose ``IMAGE_TOKEN_INDEX`` entries take the media in order."""
        visual = self.projector(self.forward_vision(pixel_values), split_sizes)
        ids = torch.tensor(input_ids)
        bounds = [-1] + torch.where(ids == IMAGE_TOKEN_INDEX)[0].tolist() + [ids.shape[0]]
        pieces = []
        for i in range(len(bounds) - 1):
            pieces.append(self.llm.get_input_embeddings()(ids[bounds[i] + 1 : bounds[i + 1]]))
            if i < len(bounds) - 2:
                pieces.append(visual[i])
        embeds = torch.cat(pieces)[None]
        return self.llm(inputs_embeds=embeds, attention_mask=torch.ones(embeds.shape[:2], dtype=torch.long)).logits
