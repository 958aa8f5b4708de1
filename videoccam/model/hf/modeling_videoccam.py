"""The single-folder Hugging Face Video-CCAM model, and the two operations training shares with it.

Self-contained (imports torch, transformers and the sibling ``configuration_videoccam`` / ``ccam_projector`` /
``constants`` files only): the exporter copies these files beside the weights and
``AutoModel.from_pretrained(folder, trust_remote_code=True)`` loads them where ``videoccam`` is not installed.

The placeholder id is the config's ``image_token_index`` everywhere (splicing, forward, generate, chat);
``constants.IMAGE_TOKEN_INDEX`` is only its default and the training placeholder.

The training model (``videoccam.model.videoccam_model.VideoCCAMModel``) calls :func:`encode_frames` and
:func:`splice_media_embeds` from here, so training, the exported model and evaluation build the LLM input the
same way.

Notation for tensor shapes: b conversations, l tokens, f frames (all media of a batch concatenated),
m media items (images or videos), q projector queries, p patches per frame, d_v vision width, d_l LLM width.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

import torch
from torch import nn
from transformers import AutoModel, AutoModelForCausalLM, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from .ccam_projector import CCAMProjector
from .configuration_videoccam import VideoCCAMConfig
from .constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX


def encode_frames(
    visual_encoder: nn.Module, pixel_values: torch.Tensor, select_layer: int, chunk_size: int
) -> torch.Tensor:
    """Run the vision tower frame by frame in chunks and return one hidden-state layer, all tokens.

    Args:
        visual_encoder: a vision tower whose output has ``hidden_states`` (SigLIP).
        pixel_values: [f, 3, h, w].
        select_layer: index into ``hidden_states`` (-2 = second to last layer).
        chunk_size: frames per forward; bounds activation memory for long videos.

    Returns:
        [f, p, d_v]. No token is dropped: SigLIP has no CLS token.
    """
    outputs = []
    for chunk in pixel_values.split(chunk_size):
        hidden = visual_encoder(chunk, output_hidden_states=True).hidden_states
        outputs.append(hidden[select_layer])
    return torch.cat(outputs)


def splice_media_embeds(
    embed_tokens: nn.Module,
    input_ids: torch.Tensor,
    media_embeds: torch.Tensor | Sequence[torch.Tensor] | None,
    attention_mask: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    padding_side: str = "right",
    image_token_index: int = IMAGE_TOKEN_INDEX,
) -> dict[str, torch.Tensor | None]:
    """Replace every ``image_token_index`` in ``input_ids`` by the q embeddings of one media item.

    Media items are consumed in reading order over the batch (sample 0 first). Padding (``attention_mask`` 0)
    is removed and re-applied after splicing on ``padding_side`` ("right" for training, "left" for
    generation). Samples without a placeholder (text-only) are kept as they are.

    Args:
        embed_tokens: the LLM's input embedding.
        input_ids: [b, l], with placeholders.
        media_embeds: [m, q, d_l] (or a list of [q_i, d_l]); m must equal the number of placeholders.
        attention_mask: [b, l], 1 for real tokens; all ones if None.
        labels: [b, l] or None; media positions get ``IGNORE_INDEX``.
        padding_side: "right" or "left".
        image_token_index: the placeholder id (the model config's ``image_token_index``; training uses xtuner's).

    Returns:
        dict with ``inputs_embeds`` [b, l', d_l], ``attention_mask`` [b, l'], ``position_ids`` [b, l'] and
        ``labels`` [b, l'] (None if no labels were given).

    Raises:
        ValueError: if the number of placeholders differs from the number of media items.
    """
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids, dtype=torch.bool)
    attention_mask = attention_mask.bool()
    is_media = input_ids == image_token_index
    num_placeholders = int(is_media.sum())
    num_media = 0 if media_embeds is None else len(media_embeds)
    if num_placeholders != num_media:
        raise ValueError(
            f"the batch has {num_placeholders} media placeholders in input_ids but {num_media} media items "
            "were given; every <image>/<video> placeholder needs exactly one image or video"
        )
    text_embeds = embed_tokens(input_ids.masked_fill(is_media, 0))  # [b, l, d_l]

    pieces, piece_labels = [], []
    media_iter = iter(media_embeds) if media_embeds is not None else iter(())
    for i in range(input_ids.shape[0]):
        keep = attention_mask[i]
        ids, embeds = input_ids[i][keep], text_embeds[i][keep]
        lab = labels[i][keep] if labels is not None else None
        media_pos = torch.nonzero(ids == image_token_index).flatten().tolist()
        parts, part_labels, start = [], [], 0
        for pos in media_pos + [ids.shape[0]]:
            parts.append(embeds[start:pos])
            if lab is not None:
                part_labels.append(lab[start:pos])
            if pos < ids.shape[0]:
                media = next(media_iter).to(embeds.dtype)
                parts.append(media)
                if lab is not None:
                    part_labels.append(lab.new_full((media.shape[0],), IGNORE_INDEX))
            start = pos + 1
        pieces.append(torch.cat(parts))
        if lab is not None:
            piece_labels.append(torch.cat(part_labels))

    max_len = max(p.shape[0] for p in pieces)
    batch, dim = len(pieces), text_embeds.shape[-1]
    out_embeds = text_embeds.new_zeros(batch, max_len, dim)
    out_mask = attention_mask.new_zeros(batch, max_len, dtype=torch.long)
    out_labels = None
    if labels is not None:
        out_labels = labels.new_full((batch, max_len), IGNORE_INDEX)
    for i, piece in enumerate(pieces):
        n = piece.shape[0]
        sl = slice(0, n) if padding_side == "right" else slice(max_len - n, max_len)
        out_embeds[i, sl] = piece
        out_mask[i, sl] = 1
        if out_labels is not None:
            out_labels[i, sl] = piece_labels[i]
    position_ids = (out_mask.cumsum(-1) - 1).clamp(min=0)
    return {
        "inputs_embeds": out_embeds,
        "attention_mask": out_mask,
        "position_ids": position_ids,
        "labels": out_labels,
    }


def tokenize_with_media(
    text: str, tokenizer: Any, media_tokens: Sequence[str], image_token_index: int = IMAGE_TOKEN_INDEX
) -> list[int]:
    """Tokenise ``text``, turning each media placeholder string into one ``image_token_index`` id.

    Text between placeholders is encoded piece by piece without special tokens added, as xtuner's
    ``encode_fn`` does in training, so prompts get the same ids at training and inference time.
    """
    pattern = "|".join(re.escape(t) for t in media_tokens)
    ids: list[int] = []
    for i, chunk in enumerate(re.split(pattern, text)):
        if i:
            ids.append(image_token_index)
        if chunk:
            ids.extend(tokenizer.encode(chunk, add_special_tokens=False))
    return ids


class VideoCCAMPreTrainedModel(PreTrainedModel):
    config_class = VideoCCAMConfig
    base_model_prefix = "videoccam"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn_2 = True
    _skip_keys_device_placement = "past_key_values"

    def _init_weights(self, module: nn.Module) -> None:
        # Sub-models initialise themselves in their own constructors; loading overwrites everything.
        pass


class VideoCCAMForCausalLM(VideoCCAMPreTrainedModel):
    """Vision tower (per frame) -> CCAM projector -> causal LLM.

    The submodule names ``visual_encoder``, ``projector`` and ``llm`` are those of the released checkpoints.
    """

    def __init__(self, config: VideoCCAMConfig) -> None:
        super().__init__(config)
        self.visual_encoder = AutoModel.from_config(config.vision_config)
        self.projector = CCAMProjector(config.projector_config)
        self.llm = AutoModelForCausalLM.from_config(config.text_config)
        self._no_split_modules = list(
            {
                *(getattr(self.llm, "_no_split_modules", None) or []),
                *(getattr(self.visual_encoder, "_no_split_modules", None) or []),
                *(getattr(self.projector, "_no_split_modules", None) or []),
            }
        )
        self.post_init()

    # -- plumbing -------------------------------------------------------------------------------------
    def get_input_embeddings(self) -> nn.Module:
        return self.llm.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.llm.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.llm.get_output_embeddings()

    def tie_weights(self) -> None:
        self.llm.tie_weights()

    # -- media ----------------------------------------------------------------------------------------
    def encode_media(self, pixel_values: torch.Tensor, num_frames: Sequence[int]) -> torch.Tensor:
        """Frames of m media items -> their LLM embeddings.

        Args:
            pixel_values: [f, 3, h, w], the frames of all items concatenated (an image is one frame).
            num_frames: frames per item, summing to f.

        Returns:
            [m, q, d_l]
        """
        vision_device = next(self.visual_encoder.parameters()).device
        vision_dtype = next(self.visual_encoder.parameters()).dtype
        features = encode_frames(
            self.visual_encoder,
            pixel_values.to(vision_device, vision_dtype),
            self.config.visual_select_layer,
            self.config.vision_chunk_size,
        )
        projector_param = next(self.projector.parameters())
        return self.projector(features.to(projector_param.device, projector_param.dtype), list(num_frames))

    def _inputs_embeds(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        labels: torch.Tensor | None,
        pixel_values: torch.Tensor | None,
        num_frames: Sequence[int] | None,
        media_embeds: torch.Tensor | Sequence[torch.Tensor] | None,
        padding_side: str,
    ) -> dict[str, torch.Tensor | None]:
        if media_embeds is None and pixel_values is not None:
            if num_frames is None:
                num_frames = [pixel_values.shape[0]]
            media_embeds = self.encode_media(pixel_values, num_frames)
        embed_device = self.get_input_embeddings().weight.device
        if media_embeds is not None:
            media_embeds = [m.to(embed_device) for m in media_embeds]
        return splice_media_embeds(
            self.get_input_embeddings(),
            input_ids.to(embed_device),
            media_embeds,
            attention_mask=None if attention_mask is None else attention_mask.to(embed_device),
            labels=None if labels is None else labels.to(embed_device),
            padding_side=padding_side,
            image_token_index=self.config.image_token_index,
        )

    # -- forward / generate ---------------------------------------------------------------------------
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        past_key_values: Any = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        num_frames: Sequence[int] | None = None,
        media_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast:
        """Causal-LM forward; ``input_ids`` may hold placeholders filled from ``pixel_values``/``media_embeds``."""
        placeholder = self.config.image_token_index
        if inputs_embeds is None and input_ids is not None and bool((input_ids == placeholder).any()):
            spliced = self._inputs_embeds(
                input_ids, attention_mask, labels, pixel_values, num_frames, media_embeds, padding_side="right"
            )
            input_ids, inputs_embeds = None, spliced["inputs_embeds"]
            attention_mask, position_ids, labels = (
                spliced["attention_mask"],
                spliced["position_ids"],
                spliced["labels"],
            )
        return self.llm(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            inputs_embeds=inputs_embeds,
            labels=labels,
            use_cache=use_cache,
            return_dict=True,
            **kwargs,
        )

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        num_frames: Sequence[int] | None = None,
        media_embeds: torch.Tensor | Sequence[torch.Tensor] | None = None,
        **generate_kwargs: Any,
    ) -> torch.Tensor:
        """Generate from left-padded ``input_ids`` with placeholders; returns only the new tokens [b, n]."""
        if input_ids is None:
            raise ValueError("generate() needs input_ids (use tokenize_with_media or chat())")
        spliced = self._inputs_embeds(
            input_ids, attention_mask, None, pixel_values, num_frames, media_embeds, padding_side="left"
        )
        gen_config = self.generation_config
        for key in ("eos_token_id", "pad_token_id", "bos_token_id"):
            if key not in generate_kwargs and getattr(gen_config, key, None) is not None:
                generate_kwargs[key] = getattr(gen_config, key)
        return self.llm.generate(
            inputs_embeds=spliced["inputs_embeds"],
            attention_mask=spliced["attention_mask"],
            **generate_kwargs,
        )

    @torch.no_grad()
    def chat(
        self,
        messages: Sequence[Sequence[dict[str, str]]],
        images: Sequence[Sequence[Any] | None] | None,
        tokenizer: Any,
        image_processor: Any = None,
        max_new_tokens: int = 512,
        do_sample: bool = False,
        media_embeds: Sequence[torch.Tensor | None] | None = None,
        **generate_kwargs: Any,
    ) -> list[str]:
        """Answer a batch of conversations.

        Args:
            messages: one conversation per item, e.g. ``[[{"role": "user", "content": "<video>\\nWhat happens?"}]]``.
                A conversation holds at most one ``<image>``/``<video>`` placeholder.
            images: one list of PIL frames per conversation (an image is a one-element list; None or [] for
                text-only conversations). Frame counts may differ across the batch.
            tokenizer, image_processor: from the same folder (``AutoTokenizer`` / ``AutoImageProcessor``).
            max_new_tokens, do_sample, generate_kwargs: passed to ``generate`` (``streamer=`` works).
            media_embeds: optional precomputed ``encode_media`` outputs, one [q, d_l] tensor (or None) per
                conversation, used instead of ``images`` (evaluation reuses them across questions).

        Returns:
            the decoded replies, special tokens removed.
        """
        media_tokens = list(self.config.media_tokens)
        batch_ids, frames, counts = [], [], []
        for i, conversation in enumerate(messages):
            text = tokenizer.apply_chat_template(list(conversation), tokenize=False, add_generation_prompt=True)
            ids = tokenize_with_media(text, tokenizer, media_tokens, self.config.image_token_index)
            n_placeholders = ids.count(self.config.image_token_index)
            item = None if images is None else images[i]
            embed = None if media_embeds is None else media_embeds[i]
            n_media = 1 if (embed is not None or item) else 0
            if n_placeholders != n_media:
                raise ValueError(
                    f"conversation {i} has {n_placeholders} media placeholders ({'/'.join(media_tokens)}) but "
                    f"{n_media} media item(s); give one list of frames per conversation with one placeholder"
                )
            batch_ids.append(ids)
            if embed is None and item:
                frames.extend(item)
                counts.append(len(item))
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        max_len = max(len(ids) for ids in batch_ids)
        input_ids = torch.full((len(batch_ids), max_len), pad_id, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        for i, ids in enumerate(batch_ids):
            input_ids[i, max_len - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            attention_mask[i, max_len - len(ids) :] = 1

        all_embeds = None
        if any(c > 0 for c in counts) or media_embeds is not None:
            encoded = iter(())
            if frames:
                if image_processor is None:
                    raise ValueError("chat() needs image_processor to turn frames into pixel values")
                pixel_values = image_processor(frames, return_tensors="pt")["pixel_values"]
                encoded = iter(self.encode_media(pixel_values, counts))
            all_embeds = []
            for i in range(len(batch_ids)):
                embed = None if media_embeds is None else media_embeds[i]
                if embed is not None:
                    all_embeds.append(embed)
                elif images is not None and images[i]:
                    all_embeds.append(next(encoded))
        generate_kwargs.setdefault("pad_token_id", pad_id)
        output = self.generate(
            input_ids=input_ids.to(self.get_input_embeddings().weight.device),
            attention_mask=attention_mask.to(self.get_input_embeddings().weight.device),
            media_embeds=all_embeds,
            max_new_tokens=max_new_tokens,
            do_sample=do_sample,
            **generate_kwargs,
        )
        return [text.strip() for text in tokenizer.batch_decode(output, skip_special_tokens=True)]


VideoCCAMConfig.register_for_auto_class()
VideoCCAMForCausalLM.register_for_auto_class("AutoModel")
