"""Replica of a released v1.2 configuration (``configuration_videoccam.py`` beside Video-CCAM-7B-v1.2's weights).

The top-level fields the released ``config.json`` shows (design.md section 8): ``text_config``,
``vision_config``, ``projector_config``, ``image_token_id``, ``video_token_id``; ``vision_feature_layer`` is this
replica's own name for the SigLIP layer the projector reads.

Self-contained: imports only transformers (copied beside the weights, loaded with ``trust_remote_code``).
"""

from transformers import CONFIG_MAPPING, PretrainedConfig


def _as_config(value, default_type):
    if value is None or isinstance(value, PretrainedConfig):
        return value
    value = dict(value)
    return CONFIG_MAPPING[value.pop("model_type", default_type)](**value)


class VideoCCAMConfig(PretrainedConfig):
    model_type = "videoccam"

    def __init__(
        self,
        text_config=None,
        vision_config=None,
        projector_config=None,
        image_token_id=None,
        video_token_id=None,
        vision_feature_layer=-2,
        **kwargs,
    ):
        self.text_config = _as_config(text_config, "qwen2")
        self.vision_config = _as_config(vision_config, "siglip_vision_model")
        self.projector_config = dict(projector_config or {})
        self.image_token_id = image_token_id
        self.video_token_id = video_token_id
        self.vision_feature_layer = vision_feature_layer
        super().__init__(**kwargs)

    def to_dict(self):
        output = super().to_dict()
        for key in ("text_config", "vision_config"):
            value = getattr(self, key)
            output[key] = value.to_dict() if value is not None else None
        return output
