# Fine-tune the released Video-CCAM-14B-v1.1 (huggingface.co/JaronTHU/Video-CCAM-14B-v1.1): the same layout and base
# models as Video-CCAM-14B (configs/released/videoccam_14b_finetune.py), another release.
#   huggingface-cli download JaronTHU/Video-CCAM-14B-v1.1 --local-dir checkpoints/Video-CCAM-14B-v1_1
#   torchrun --nproc_per_node=8 tools/train.py configs/released/videoccam_14b_v1_1_finetune.py \
#       --launcher pytorch --deepspeed configs/deepspeed/zero2_bf16.json
from mmengine.config import read_base

with read_base():
    from .videoccam_14b_finetune import *  # noqa: F401,F403

#######################################################################
#                          PART 1  Settings                           #
#######################################################################
released_path = "checkpoints/Video-CCAM-14B-v1_1"  # no dot in the folder name (transformers 4.48 remote-code imports)

#######################################################################
#              PART 2-5  the values above, where they are read        #
#######################################################################
model.llm.released_path = released_path  # noqa: F405
model.visual_encoder.released_path = released_path  # noqa: F405
model.projector.released_path = released_path  # noqa: F405
