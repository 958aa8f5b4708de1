"""videoccam/model/hf/constants.py: the one definition of the token constants agrees with xtuner's."""

from __future__ import annotations

from xtuner.utils import DEFAULT_IMAGE_TOKEN
from xtuner.utils import IGNORE_INDEX as XTUNER_IGNORE_INDEX
from xtuner.utils import IMAGE_TOKEN_INDEX as XTUNER_IMAGE_TOKEN_INDEX

from videoccam.model.hf import constants
from videoccam.model.hf.configuration_videoccam import VideoCCAMConfig


def test_constants_agree_with_xtuners_training_data():
    # xtuner's encode_fn writes its IMAGE_TOKEN_INDEX into input_ids and IGNORE_INDEX into labels
    assert constants.IMAGE_TOKEN_INDEX == XTUNER_IMAGE_TOKEN_INDEX == -200
    assert constants.IGNORE_INDEX == XTUNER_IGNORE_INDEX == -100
    assert constants.IMAGE_TOKEN == DEFAULT_IMAGE_TOKEN == "<image>"
    assert constants.MEDIA_TOKENS == (constants.IMAGE_TOKEN, constants.VIDEO_TOKEN) == ("<image>", "<video>")


def test_the_config_defaults_are_the_constants():
    config = VideoCCAMConfig()
    assert config.image_token_index == constants.IMAGE_TOKEN_INDEX
    assert config.media_tokens == list(constants.MEDIA_TOKENS)
