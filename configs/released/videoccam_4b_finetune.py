# Fine-tune the released Video-CCAM-4B (v1.0, huggingface.co/JaronTHU/Video-CCAM-4B) on your own video QA data.
# The v1.0 / v1.1 xtuner layout (`xtuner_layout_model`) of configs/_base_/videoccam_released.py, on
# microsoft/Phi-3-mini-4k-instruct (the LLM block, batch and memory of the phi3_mini_4k stage-2 recipe); README "Fine-
# tune a released Video-CCAM model".
#   huggingface-cli download JaronTHU/Video-CCAM-4B --local-dir checkpoints/Video-CCAM-4B
#   torchrun --nproc_per_node=8 tools/train.py configs/released/videoccam_4b_finetune.py \
#       --launcher pytorch --deepspeed configs/deepspeed/zero2_bf16.json
#   python tools/convert_to_hf.py configs/released/videoccam_4b_finetune.py \
#       work_dirs/videoccam_4b_finetune OUT --save-format released
from mmengine.config import read_base

with read_base():
    from ..phi3_mini_4k.videoccam_phi3_mini_4k_stage2 import *  # noqa: F401,F403
    from .._base_.videoccam_released import *  # noqa: F401,F403

#######################################################################
#                          PART 1  Settings                           #
#######################################################################
released_path = "checkpoints/Video-CCAM-4B"  # the downloaded release (a local folder)
llm_name_or_path = "microsoft/Phi-3-mini-4k-instruct"  # the base LLM the release adapts

#######################################################################
#              PART 2-5  the values above, where they are read        #
#######################################################################
model = xtuner_layout_model  # noqa: F405
del xtuner_layout_model, folder_model  # noqa: F821  (the base's names for the layouts: only `model` is used)
model.llm.released_path = model.visual_encoder.released_path = released_path  # noqa: F405
model.projector.released_path = released_path  # noqa: F405
model.llm.llm_name_or_path = tokenizer.pretrained_model_name_or_path = llm_name_or_path  # noqa: F405
train_dataloader.dataset.update(  # noqa: F405
    data_path=data_path, data_root=data_root, num_queries=num_queries, tokenizer=tokenizer,  # noqa: F405
    image_processor=image_processor,  # noqa: F405
)
optim_wrapper.optimizer.lr = lr  # noqa: F405
train_cfg.max_epochs = max_epochs  # noqa: F405
param_scheduler[0].end = warmup_ratio * max_epochs  # noqa: F405
param_scheduler[1].update(begin=warmup_ratio * max_epochs, end=max_epochs)  # noqa: F405
