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

import inspect
import re
from typing import Any, Sequence

import torch
from torch import nn
from transformers import AutoModel, AutoModelForCausalLM, DynamicCache, PreTrainedModel
from transformers import PretrainedConfig as PretrainedConfigBase
from transformers.modeling_outputs import CausalLMOutputWithPast

from .ccam_projector import CCAMProjector, CCAMProjectorConfig
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


def cache_argument(llm: nn.Module) -> str:
    """The name under which ``llm`` takes its KV cache: ``cache`` (transformers >= 5.24, where
    ``past_key_values`` is deprecated) or ``past_key_values``."""
    return "cache" if "cache" in inspect.signature(llm.forward).parameters else "past_key_values"


def projector_classes(config: VideoCCAMConfig) -> tuple[type, type]:
    """(config class, model class) of the projector: the project's CCAM projector, or the projector's own code.

    With ``config.projector_auto_map`` (a projector that came with its own remote code, e.g. a released one) the
    classes are loaded from the files beside the model's ``config.json`` (``config.name_or_path``), the way
    ``trust_remote_code`` loads the model itself.

    Raises:
        ValueError: if the projector has its own code but the config does not say where the model was loaded from.
    """
    auto_map = config.projector_auto_map
    if not auto_map:
        return CCAMProjectorConfig, CCAMProjector
    from transformers.dynamic_module_utils import get_class_from_dynamic_module

    source = config.name_or_path
    if not source:
        raise ValueError(
            f"the projector of this model has its own code ({auto_map['AutoModel']}), which is loaded from the "
            "model's folder: load the model with from_pretrained(folder, trust_remote_code=True)"
        )
    model_class = get_class_from_dynamic_module(auto_map["AutoModel"], source)
    config_class = getattr(model_class, "config_class", None)
    if config_class is None or config_class is PretrainedConfigBase:
        config_class = get_class_from_dynamic_module(auto_map["AutoConfig"], source)
    return config_class, model_class


def _projector_config(config_class: type, value: Any) -> Any:
    if value is None or not isinstance(value, dict):
        return value
    fields = {k: v for k, v in value.items()
              if k not in ("model_type", "transformers_version", "architectures", "auto_map", "_name_or_path")}
    return config_class.from_dict(fields)


class VideoCCAMPreTrainedModel(PreTrainedModel):
    config_class = VideoCCAMConfig
    base_model_prefix = "videoccam"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn_2 = True
    _skip_keys_device_placement = ["past_key_values", "cache"]

    def _init_weights(self, module: nn.Module) -> None:
        # Sub-models initialise themselves in their own constructors; loading overwrites everything.
        pass


class VideoCCAMForCausalLM(VideoCCAMPreTrainedModel):
    """Vision tower (per frame) -> CCAM projector -> causal LLM.

    The submodule names ``visual_encoder``, ``projector`` and ``llm`` are those of the released v1.0 checkpoints;
    ``vision_encoder`` (the v1.2 name, which upstream's web demo uses) is the same module.

    Args:
        config: the model config.
        projector_class: the projector's class when it has its own code and the model is built in memory (the
            exporter); ``from_pretrained`` finds it from ``config.projector_auto_map``.
    """

    def __init__(self, config: VideoCCAMConfig, projector_class: type | None = None) -> None:
        super().__init__(config)
        self.visual_encoder = AutoModel.from_config(config.vision_config)
        if projector_class is None:
            config_class, projector_class = projector_classes(config)
        else:
            config_class = getattr(projector_class, "config_class", None) or CCAMProjectorConfig
        self.projector = projector_class(_projector_config(config_class, config.projector_config))
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
    @property
    def vision_encoder(self) -> nn.Module:
        """The vision tower under its v1.2 name (read-only: the module, and its weights, are ``visual_encoder``)."""
        return self.visual_encoder

    def get_input_embeddings(self) -> nn.Module:
        return self.llm.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.llm.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.llm.get_output_embeddings()

    def tie_weights(self, *args: Any, **kwargs: Any) -> None:
        """Tie the LLM's output head to its input embeddings when its text config says so.

        transformers 5 ties them itself from the submodels' tied-weight keys (and calls this with keyword
        arguments, ``missing_keys`` / ``recompute_mapping``); transformers 4 only reads this config's
        ``tie_word_embeddings``, so the LLM ties its own as well.
        """
        super().tie_weights(*args, **kwargs)
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

    def _as_placeholders(self, input_ids: torch.Tensor) -> torch.Tensor:
        """``input_ids`` with the tokenizer's ``<image>``/``<video>`` ids turned into ``image_token_index``."""
        token_ids = [i for i in (self.config.image_token_id, self.config.video_token_id) if i is not None]
        if not token_ids:
            return input_ids
        is_media = torch.isin(input_ids, torch.tensor(token_ids, device=input_ids.device))
        return input_ids.masked_fill(is_media, self.config.image_token_index)

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
            self._as_placeholders(input_ids.to(embed_device)),
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
        vision_split_sizes: Sequence[int] | None = None,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast:
        """Causal-LM forward; ``input_ids`` may hold placeholders filled from ``pixel_values``/``media_embeds``.

        ``vision_split_sizes`` (v1.2's name) is ``num_frames``: frames per media item.
        """
        num_frames = _frames_per_item(num_frames, vision_split_sizes)
        if inputs_embeds is None and input_ids is not None:
            input_ids = self._as_placeholders(input_ids)
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
        if past_key_values is not None:
            kwargs[cache_argument(self.llm)] = past_key_values
        return self.llm(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            labels=labels,
            use_cache=use_cache,
            return_dict=True,
            **kwargs,
        )

    def _with_generation_defaults(self, generate_kwargs: dict[str, Any]) -> dict[str, Any]:
        # None means "not set": transformers 5 leaves GenerationConfig fields such as num_beams None, and upstream's
        # web demo passes model.generation_config's values on to generate()
        generate_kwargs = {key: value for key, value in generate_kwargs.items() if value is not None}
        gen_config = self.generation_config
        for key in ("eos_token_id", "pad_token_id", "bos_token_id"):
            if key not in generate_kwargs and getattr(gen_config, key, None) is not None:
                generate_kwargs[key] = getattr(gen_config, key)
        return generate_kwargs

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor | Sequence[Sequence[int] | torch.Tensor] | None = None,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        num_frames: Sequence[int] | None = None,
        media_embeds: torch.Tensor | Sequence[torch.Tensor] | None = None,
        vision_split_sizes: Sequence[int] | None = None,
        past_key_values: Any = None,
        **generate_kwargs: Any,
    ) -> torch.Tensor | tuple[torch.Tensor, Any]:
        """Generate a reply; two call forms.

        * ``input_ids`` a [b, l] tensor (left-padded, placeholders ``image_token_index``), with ``attention_mask``:
          returns only the new tokens [b, n].
        * ``input_ids`` a list of token id sequences, as upstream's v1.2 web demo calls it::

              new_ids, past_key_values = model.generate(
                  input_ids=[tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)],
                  pixel_values=pixel_values, vision_split_sizes=[frames per file], past_key_values=DynamicCache(),
                  do_sample=False, max_new_tokens=512)

          ``<image>``/``<video>`` token ids (or ``image_token_index``) take the next media item each, in order;
          ``vision_split_sizes`` gives each item's frames. Returns ``(new_ids, past_key_values)``: the new tokens
          (1-D for one sequence) and the cache, which then holds the whole conversation (prompt and reply): pass
          it with the next message's ids alone to continue the chat. With several sequences (left-padded as a
          batch) the cache must be None and the new tokens are [b, n].

        Args:
            input_ids: see above.
            attention_mask: [b, l] for the tensor form.
            pixel_values: [f, 3, h, w], the frames of all media items.
            num_frames, vision_split_sizes: frames per media item (two names for the same list).
            media_embeds: precomputed ``encode_media`` outputs instead of ``pixel_values``.
            past_key_values: a ``transformers`` cache (``DynamicCache``) for the list form: the conversation so far.
            **generate_kwargs: passed to the LLM's ``generate`` (``max_new_tokens``, ``do_sample``, ``num_beams``,
                ``temperature``, ``top_k``, ``top_p``, ``repetition_penalty``, ``streamer``, ...); those given as
                None are left to the generation config.

        Raises:
            ValueError: for inputs that do not fit (counts of placeholders and media items, a cache with a batch
                or with beam search).
        """
        if input_ids is None:
            raise ValueError("generate() needs input_ids (use tokenize_with_media or chat())")
        num_frames = _frames_per_item(num_frames, vision_split_sizes)
        generate_kwargs = self._with_generation_defaults(generate_kwargs)
        if not isinstance(input_ids, torch.Tensor):
            return self._generate_from_lists(
                input_ids, pixel_values, num_frames, media_embeds, past_key_values, generate_kwargs
            )
        if past_key_values is not None:
            raise ValueError(
                "past_key_values continues a conversation: pass input_ids as a list of token ids "
                "(generate(input_ids=[ids], ..., past_key_values=cache)), which returns (new_ids, past_key_values)"
            )
        spliced = self._inputs_embeds(
            input_ids, attention_mask, None, pixel_values, num_frames, media_embeds, padding_side="left"
        )
        return self.llm.generate(
            inputs_embeds=spliced["inputs_embeds"],
            attention_mask=spliced["attention_mask"],
            **generate_kwargs,
        )

    def _generate_from_lists(
        self,
        input_ids: Sequence[Sequence[int] | torch.Tensor],
        pixel_values: torch.Tensor | None,
        num_frames: Sequence[int] | None,
        media_embeds: Any,
        cache: Any,
        generate_kwargs: dict[str, Any],
    ) -> tuple[torch.Tensor, Any]:
        device = self.get_input_embeddings().weight.device
        sequences = [torch.as_tensor(ids, dtype=torch.long).flatten() for ids in input_ids]
        if not sequences or any(len(seq) == 0 for seq in sequences):
            raise ValueError("generate() got an empty input_ids sequence")
        past = 0 if cache is None else cache.get_seq_length()
        if len(sequences) > 1:
            if past:
                raise ValueError(
                    f"a cache holds one conversation; got {len(sequences)} sequences with a non-empty past_key_values"
                )
            pad = generate_kwargs.get("pad_token_id")
            pad = pad if isinstance(pad, int) else 0
            length = max(len(seq) for seq in sequences)
            batch = torch.full((len(sequences), length), pad, dtype=torch.long)
            mask = torch.zeros_like(batch)
            for i, seq in enumerate(sequences):
                batch[i, length - len(seq):] = seq
                mask[i, length - len(seq):] = 1
            spliced = self._inputs_embeds(
                batch.to(device), mask.to(device), None, pixel_values, num_frames, media_embeds, padding_side="left"
            )
            output = self.llm.generate(
                inputs_embeds=spliced["inputs_embeds"], attention_mask=spliced["attention_mask"], **generate_kwargs
            )
            return output, cache
        ids = self._as_placeholders(sequences[0].to(device))[None]  # [1, l]
        if int(ids[0, -1]) == self.config.image_token_index:
            raise ValueError("the prompt ends with an <image>/<video> placeholder; end it with text (the chat "
                             "template's generation prompt: add_generation_prompt=True)")  # fmt: skip
        embeds = self._inputs_embeds(ids, None, None, pixel_values, num_frames, media_embeds, "left")["inputs_embeds"]
        cache = DynamicCache() if cache is None else cache
        if (generate_kwargs.get("num_beams") or getattr(self.generation_config, "num_beams", 1) or 1) > 1:
            if past:
                raise ValueError("beam search (num_beams > 1) cannot continue a conversation from past_key_values; "
                                 "use num_beams=1 or start from an empty cache")  # fmt: skip
            new = self.llm.generate(
                inputs_embeds=embeds, attention_mask=torch.ones(embeds.shape[:2], dtype=torch.long, device=device),
                **generate_kwargs,
            )[0]
            # the beams used their own cache: the conversation so far goes into the caller's, in one forward
            self._extend_cache(cache, torch.cat([embeds, self.get_input_embeddings()(new[None])], dim=1))
            return new, cache
        # The cache gets the prompt but its last token; the LLM's generate() then continues from that token with
        # the cache (it only feeds the positions the cache lacks, so the cached ones are stand-in ids) ...
        self._extend_cache(cache, embeds[:, :-1])
        cached = cache.get_seq_length()
        pad = generate_kwargs.get("pad_token_id")
        pad = pad if isinstance(pad, int) else 0
        continued = torch.cat([ids.new_full((1, cached), pad), ids[:, -1:]], dim=1)
        output = self.llm.generate(
            input_ids=continued, attention_mask=torch.ones_like(continued),
            **{cache_argument(self.llm): cache}, **generate_kwargs,
        )
        new = output[0, cached + 1:]
        # ... and never feeds the token it generated last: add it, so the cache holds the whole reply
        if len(new) and cache.get_seq_length() < cached + 1 + len(new):
            self._extend_cache(cache, self.get_input_embeddings()(new[None, -1:]))
        return new, cache

    def _extend_cache(self, cache: Any, embeds: torch.Tensor) -> None:
        """Run the LLM on ``embeds`` [1, n, d_l] after what ``cache`` holds, appending their keys and values."""
        if embeds.shape[1] == 0:
            return
        past = cache.get_seq_length()
        positions = torch.arange(past, past + embeds.shape[1], device=embeds.device)[None]
        self.llm(
            inputs_embeds=embeds,
            attention_mask=torch.ones((1, past + embeds.shape[1]), dtype=torch.long, device=embeds.device),
            position_ids=positions,
            use_cache=True,
            **{cache_argument(self.llm): cache},
        )

    @torch.no_grad()
    def chat(
        self,
        messages: Sequence[Sequence[dict[str, str]]],
        images: Sequence[Any] | None,
        tokenizer: Any,
        image_processor: Any = None,
        max_new_tokens: int = 512,
        do_sample: bool = False,
        media_embeds: Sequence[Any] | None = None,
        **generate_kwargs: Any,
    ) -> list[str]:
        """Answer a batch of conversations.

        Args:
            messages: one conversation per item, e.g. ``[[{"role": "user", "content": "<video>\\nWhat happens?"}]]``;
                every ``<image>``/``<video>`` placeholder (in any message of it) takes the next media item of the
                conversation.
            images: per conversation, its media items: a list of PIL frames for a conversation with one item (an
                image is a one-element list; a bare PIL image works too), a list of items (each a list of frames
                or a PIL image) for several, or, with k placeholders, a flat list of k PIL images (one image each);
                None or [] for text-only conversations. Frame counts may differ.
            tokenizer, image_processor: from the same folder (``AutoTokenizer`` / ``AutoImageProcessor``).
            max_new_tokens, do_sample, generate_kwargs: passed to ``generate`` (``streamer=`` works).
            media_embeds: optional precomputed ``encode_media`` outputs per conversation, used instead of
                ``images``: one [q, d_l] tensor (one item), a [k, q, d_l] tensor or list of k tensors, or None
                (evaluation reuses them across questions).

        Returns:
            the decoded replies, special tokens removed.

        Raises:
            ValueError: if a conversation's placeholders and media items differ in number.
        """
        media_tokens = list(self.config.media_tokens)
        batch_ids, frames, counts, slots = [], [], [], []  # slots: per item, a precomputed embedding or None
        for i, conversation in enumerate(messages):
            text = tokenizer.apply_chat_template(list(conversation), tokenize=False, add_generation_prompt=True)
            ids = tokenize_with_media(text, tokenizer, media_tokens, self.config.image_token_index)
            n_placeholders = ids.count(self.config.image_token_index)
            given = None if media_embeds is None else media_embeds[i]
            if given is not None:
                items = [given] if isinstance(given, torch.Tensor) and given.dim() == 2 else list(given)
                slots.extend(items)
            else:
                items = _media_items(None if images is None else images[i], n_placeholders, i)
                for item in items:
                    frames.extend(item)
                    counts.append(len(item))
                    slots.append(None)
            if n_placeholders != len(items):
                raise ValueError(
                    f"conversation {i} has {n_placeholders} media placeholders ({'/'.join(media_tokens)}) but "
                    f"{len(items)} media item(s); each placeholder takes one image or video, in order"
                )
            batch_ids.append(ids)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        max_len = max(len(ids) for ids in batch_ids)
        input_ids = torch.full((len(batch_ids), max_len), pad_id, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        for i, ids in enumerate(batch_ids):
            input_ids[i, max_len - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            attention_mask[i, max_len - len(ids) :] = 1

        all_embeds = None
        if slots:
            encoded = iter(())
            if frames:
                if image_processor is None:
                    raise ValueError("chat() needs image_processor to turn frames into pixel values")
                pixel_values = image_processor(frames, return_tensors="pt")["pixel_values"]
                encoded = iter(self.encode_media(pixel_values, counts))
            all_embeds = [next(encoded) if slot is None else slot for slot in slots]
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


def _frames_per_item(num_frames: Sequence[int] | None, vision_split_sizes: Sequence[int] | None) -> list | None:
    """``num_frames`` or its v1.2 name ``vision_split_sizes`` (they must agree if both are given)."""
    if vision_split_sizes is None:
        return None if num_frames is None else list(num_frames)
    if num_frames is not None and list(num_frames) != list(vision_split_sizes):
        raise ValueError(f"num_frames={list(num_frames)} and vision_split_sizes={list(vision_split_sizes)} differ")
    return [int(n) for n in vision_split_sizes]


def _is_frame_list(value: Any) -> bool:
    return isinstance(value, (list, tuple))


def _media_items(images: Any, num_placeholders: int, index: int) -> list[list[Any]]:
    """One conversation's ``images`` argument of :meth:`VideoCCAMForCausalLM.chat` as a list of frame lists."""
    if images is None or (_is_frame_list(images) and len(images) == 0):
        return []
    if not _is_frame_list(images):
        return [[images]]  # a single image
    if any(_is_frame_list(item) for item in images):
        return [list(item) if _is_frame_list(item) else [item] for item in images]  # one entry per item
    if num_placeholders <= 1:
        return [list(images)]  # the frames of one image or video
    if len(images) == num_placeholders:
        return [[image] for image in images]  # one image per placeholder
    raise ValueError(
        f"conversation {index} has {num_placeholders} media placeholders and a flat list of {len(images)} frames; "
        "give one list of frames per image or video (images[i] = [frames of item 1, frames of item 2, ...])"
    )


VideoCCAMConfig.register_for_auto_class()
VideoCCAMForCausalLM.register_for_auto_class("AutoModel")
