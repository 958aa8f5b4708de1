"""Configuration of the single-folder Hugging Face Video-CCAM model.

Self-contained: imports only transformers and the sibling ``ccam_projector`` / ``constants`` files, because it is
copied next to exported weights and loaded with ``trust_remote_code=True`` where ``videoccam`` is not installed.
"""

from __future__ import annotations

from typing import Any

from transformers import CONFIG_MAPPING, AutoConfig, PretrainedConfig

from .ccam_projector import CCAMProjectorConfig
from .constants import IMAGE_TOKEN_INDEX, MEDIA_TOKENS


def _sub_config(value: Any, default_type: str | None) -> PretrainedConfig | None:
    if value is None or isinstance(value, PretrainedConfig):
        return value
    value = dict(value)
    model_type = value.pop("model_type", default_type)
    if model_type not in CONFIG_MAPPING:
        raise ValueError(f"unknown sub-model type {model_type!r} in VideoCCAMConfig")
    return CONFIG_MAPPING[model_type](**value)


class VideoCCAMConfig(PretrainedConfig):
    """Video-CCAM = vision encoder (per frame) + CCAM projector + causal LLM.

    Args:
        text_config: config of the LLM (any ``AutoModelForCausalLM`` architecture), as a config or a dict
            with ``model_type``.
        vision_config: config of the per-frame vision encoder (``siglip_vision_model`` for the released
            family; any ``AutoModel`` vision tower returning ``hidden_states`` works).
        projector_config: :class:`CCAMProjectorConfig` or its dict.
        visual_select_layer: which entry of the vision tower's ``hidden_states`` feeds the projector
            (all tokens are used: SigLIP has no CLS token).
        vision_chunk_size: frames per vision forward, bounds activation memory for long videos.
        image_token_index: the placeholder id in ``input_ids`` that stands for one image or video.
        media_tokens: the text placeholders that map to ``image_token_index`` when tokenising prompts.
        image_token_id, video_token_id: the tokenizer's ids of ``<image>`` / ``<video>`` (v1.2's field names), so
            that ``input_ids`` straight from ``tokenizer.apply_chat_template(..., tokenize=True)`` work as
            placeholders too (``generate(input_ids=[ids], ...)``, as upstream's web demo calls it). None: only
            ``image_token_index`` is a placeholder.
        projector_auto_map: None for the project's own :class:`CCAMProjector`; for a projector with its own code
            (a released one), ``{"AutoConfig": "<module>.<Class>", "AutoModel": "<module>.<Class>"}`` naming the
            files beside this config that define it, and ``projector_config`` is then that projector's config
            (its own fields) as a dict or config object.
    """

    model_type = "videoccam"
    # lets from_pretrained(attn_implementation=...) reach the LLM and the vision tower
    sub_configs = {"text_config": AutoConfig, "vision_config": AutoConfig}

    def __init__(
        self,
        text_config: Any = None,
        vision_config: Any = None,
        projector_config: Any = None,
        visual_select_layer: int = -2,
        vision_chunk_size: int = 64,
        image_token_index: int = IMAGE_TOKEN_INDEX,
        media_tokens: tuple[str, ...] | list[str] = MEDIA_TOKENS,
        image_token_id: int | None = None,
        video_token_id: int | None = None,
        projector_auto_map: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        self.text_config = _sub_config(text_config, "qwen2")
        self.vision_config = _sub_config(vision_config, "siglip_vision_model")
        if projector_auto_map:
            missing = {"AutoConfig", "AutoModel"} - set(projector_auto_map)
            if missing:
                raise ValueError(f"projector_auto_map needs AutoConfig and AutoModel entries, got {projector_auto_map}")
        elif projector_config is not None and not isinstance(projector_config, CCAMProjectorConfig):
            projector_config = CCAMProjectorConfig(**projector_config)
        self.projector_config = projector_config
        self.projector_auto_map = dict(projector_auto_map) if projector_auto_map else None
        self.image_token_id = image_token_id
        self.video_token_id = video_token_id
        if vision_chunk_size < 1:
            raise ValueError(f"vision_chunk_size must be >= 1, got {vision_chunk_size}")
        self.visual_select_layer = visual_select_layer
        self.vision_chunk_size = vision_chunk_size
        self.image_token_index = image_token_index
        self.media_tokens = list(media_tokens)
        kwargs.setdefault("tie_word_embeddings", False)
        super().__init__(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        output = super().to_dict()
        for key in ("text_config", "vision_config", "projector_config"):
            value = getattr(self, key)
            output[key] = value.to_dict() if isinstance(value, PretrainedConfig) else value
        return output
