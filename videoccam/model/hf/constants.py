"""Token constants shared by the exported model, the dataset and the training model: defined here, once.

Self-contained (no imports): exported with the other files of this folder (``from .constants import ...``),
and the package imports them from here. ``IMAGE_TOKEN_INDEX`` and ``IGNORE_INDEX`` must equal xtuner's
(``xtuner.utils.IMAGE_TOKEN_INDEX`` / ``IGNORE_INDEX``), because xtuner's ``encode_fn`` writes the placeholder
id into the training data; ``tests/model/hf/test_constants.py`` checks that they agree.
"""

IMAGE_TOKEN = "<image>"
VIDEO_TOKEN = "<video>"
MEDIA_TOKENS = (IMAGE_TOKEN, VIDEO_TOKEN)
# xtuner's placeholder id (xtuner.utils.IMAGE_TOKEN_INDEX): one id in input_ids per image or video,
# replaced by the projector's num_queries embeddings inside the model.
IMAGE_TOKEN_INDEX = -200
IGNORE_INDEX = -100
