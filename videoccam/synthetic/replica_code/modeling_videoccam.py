"""Replica of a released v1.2 model (``modeling_videoccam.py`` beside Video-CCAM-7B-v1.2's weights).

``VideoCCAM`` holds a SigLIP vision tower (``vision_encoder``, the attribute upstream's web demo uses), the
projector of the sibling ``modeling_ccam_projector.py`` (``mm_projector``) and a causal LM (``language_model``):
attribute names unlike the project's own ``visual_encoder`` / ``projector`` / ``llm``. The ``<image>`` and
``<video>`` tokens are real tokenizer ids (``config.image_token_id`` / ``video_token_id``); each one in
``input_ids`` takes the next media item, whose frame count is the next entry of ``vision_split_sizes``. The
public calls are those upstream's README and web demo make: ``chat(messages, images, tokenizer,
image_processor, ...)`` and ``generate(input_ids=[ids], pixel_values, vision_split_sizes, past_key_values, ...)``
returning ``(new_ids, past_key_values)``; ``forward`` returns the LLM's output (logits) for the tests.

Self-contained: imports only torch, transformers and its sibling files.
"""

import torch
from torch import nn
from transformers import AutoModel, AutoModelForCausalLM, DynamicCache, PreTrainedModel

from .configuration_ccam_projector import CCAMConfig
from .configuration_videoccam import VideoCCAMConfig
from .modeling_ccam_projector import CCAMModel


class VideoCCAM(PreTrainedModel):
    config_class = VideoCCAMConfig
    _supports_sdpa = True

    def __init__(self, config):
        super().__init__(config)
        self.vision_encoder = AutoModel.from_config(config.vision_config)
        self.mm_projector = CCAMModel(CCAMConfig(**config.projector_config))
        self.language_model = AutoModelForCausalLM.from_config(config.text_config)
        self.post_init()

    def _init_weights(self, module):
        pass  # every part initialises itself; from_pretrained loads all weights

    def get_input_embeddings(self):
        return self.language_model.get_input_embeddings()

    def _media_ids(self):
        return [i for i in (self.config.image_token_id, self.config.video_token_id) if i is not None]

    def _visual_tokens(self, pixel_values, vision_split_sizes):
        weight = self.vision_encoder.get_input_embeddings().weight
        hidden = self.vision_encoder(pixel_values.to(weight.device, weight.dtype), output_hidden_states=True)
        features = hidden.hidden_states[self.config.vision_feature_layer]
        return self.mm_projector(features, vision_split_sizes)  # [items, num_query, d]

    def _embed_one(self, ids, visual):
        """ids [L] with media tokens, visual: iterator of [num_query, d] -> [L', d]."""
        embed = self.get_input_embeddings()
        is_media = torch.isin(ids, torch.tensor(self._media_ids(), device=ids.device))
        pieces, start = [], 0
        for pos in torch.nonzero(is_media).flatten().tolist() + [len(ids)]:
            pieces.append(embed(ids[start:pos]))
            if pos < len(ids):
                pieces.append(next(visual).to(pieces[-1].dtype))
            start = pos + 1
        return torch.cat(pieces)

    def _embed(self, input_ids, pixel_values, vision_split_sizes):
        """List of id sequences -> left-padded inputs_embeds [B, L, d] and attention mask [B, L]."""
        device = self.get_input_embeddings().weight.device
        visual = iter(())
        if pixel_values is not None:
            visual = iter(self._visual_tokens(pixel_values, list(vision_split_sizes)))
        rows = [self._embed_one(torch.as_tensor(ids, device=device), visual) for ids in input_ids]
        length = max(r.shape[0] for r in rows)
        embeds = rows[0].new_zeros(len(rows), length, rows[0].shape[-1])
        mask = torch.zeros(len(rows), length, dtype=torch.long, device=device)
        for i, row in enumerate(rows):
            embeds[i, length - row.shape[0]:] = row
            mask[i, length - row.shape[0]:] = 1
        return embeds, mask

    def forward(self, input_ids, pixel_values=None, vision_split_sizes=None, labels=None, **kwargs):
        embeds, mask = self._embed(list(input_ids), pixel_values, vision_split_sizes)
        return self.language_model(inputs_embeds=embeds, attention_mask=mask, labels=labels, **kwargs)

    @torch.no_grad()
    def generate(self, input_ids, pixel_values=None, vision_split_sizes=None, past_key_values=None, **kwargs):
        if past_key_values is not None and past_key_values.get_seq_length() > 0:
            raise ValueError("this replica starts every generate() from an empty cache")
        embeds, mask = self._embed(list(input_ids), pixel_values, vision_split_sizes)
        past_key_values = DynamicCache() if past_key_values is None else past_key_values
        output = self.language_model.generate(
            inputs_embeds=embeds, attention_mask=mask, past_key_values=past_key_values, **kwargs
        )
        return (output[0] if len(input_ids) == 1 else output), past_key_values

    @torch.no_grad()
    def chat(self, messages, images, tokenizer, image_processor, **kwargs):
        input_ids = [
            tokenizer.apply_chat_template(list(m), tokenize=True, add_generation_prompt=True) for m in messages
        ]
        frames, split_sizes = [], []
        for item in images:
            if item:
                frames += list(item)
                split_sizes.append(len(item))
        pixel_values = image_processor(frames, return_tensors="pt")["pixel_values"] if frames else None
        kwargs.setdefault("pad_token_id", tokenizer.pad_token_id)
        output, _ = self.generate(input_ids, pixel_values, split_sizes, **kwargs)
        output = output if output.dim() == 2 else output[None]
        return [text.strip() for text in tokenizer.batch_decode(output, skip_special_tokens=True)]
