"""Token constants shared by the dataset, the training model and the exported model.

The exported Hugging Face files (``videoccam/model/modeling_videoccam.py``) repeat the few values they need,
because they must import nothing from this package; ``tests/model/test_modeling_videoccam.py`` checks that
the copies agree.
"""

IMAGE_TOKEN = "<image>"
VIDEO_TOKEN = "<video>"
MEDIA_TOKENS = (IMAGE_TOKEN, VIDEO_TOKEN)
# xtuner's placeholder id (xtuner.utils.IMAGE_TOKEN_INDEX): one id in input_ids per image or video,
# replaced by the projector's num_queries embeddings inside the model.
IMAGE_TOKEN_INDEX = -200
IGNORE_INDEX = -100
