# Fine-tune the released Video-CCAM-4B-v1.2 (huggingface.co/JaronTHU/Video-CCAM-4B-v1.2) on your own video QA data.
# The v1.2 single-folder layout (`folder_model`) of configs/_base_/videoccam_released.py, on microsoft/Phi-3.5-mini-
# instruct (the LLM block, batch and memory of the phi3_5_mini stage-2 recipe); README "Fine-tune a released Video-
# CCAM model".
#   huggingface-cli download JaronTHU/Video-CCAM-4B-v1.2 --local-dir checkpoints/Video-CCAM-4B-v1_2
#   torchrun --nproc_per_node=8 tools/train.py configs/released/videoccam_4b_v1_2_finetune.py \
#       --launcher pytorch --deepspeed configs/deepspeed/zero2_bf16.json
#   python tools/convert_to_hf.py configs/released/videoccam_4b_v1_2_finetune.py \
#       work_dirs/videoccam_4b_v1_2_finetune OUT --save-format released
from mmengine.config import read_base

with read_base():
    from ..phi3_5_mini.videoccam_phi3_5_mini_stage2 import *  # noqa: F401,F403
    from .._base_.videoccam_released import *  # noqa: F401,F403

#######################################################################
#                          PART 1  Settings                           #
#######################################################################
released_path = "checkpoints/Video-CCAM-4B-v1_2"  # no dot in the folder name (transformers 4.48 remote-code imports)

#######################################################################
#              PART 2-5  the values above, where they are read        #
#######################################################################
model = folder_model  # noqa: F405
del xtuner_layout_model, folder_model  # noqa: F821  (the base's names for the layouts: only `model` is used)
model.llm.released_path = model.visual_encoder.released_path = released_path  # noqa: F405
model.projector.released_path = released_path  # noqa: F405
# the release's tokenizer (its <image>/<video> tokens and chat template) and image processor
tokenizer.update(pretrained_model_name_or_path=released_path, trust_remote_code=True)  # noqa: F405
image_processor.pretrained_model_name_or_path = released_path  # noqa: F405
train_dataloader.dataset.update(  # noqa: F405
    data_path=data_path, data_root=data_root, num_queries=num_queries, tokenizer=tokenizer,  # noqa: F405
    image_processor=image_processor,  # noqa: F405
)
optim_wrapper.optimizer.lr = lr  # noqa: F405
train_cfg.max_epochs = max_epochs  # noqa: F405
param_scheduler[0].end = warmup_ratio * max_epochs  # noqa: F405
param_scheduler[1].update(begin=warmup_ratio * max_epochs, end=max_epochs)  # noqa: F405
