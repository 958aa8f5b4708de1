# Video-CCAM stage 2 (instruction tuning: projector + LoRA on the LLM and on SigLIP) with Phi-3.5-mini-instruct (3.8B):
# this LLM's stage-1 config plus the stage-2 additions of configs/_base_/videoccam_stage2.py.
#   torchrun --nproc_per_node=8 tools/train.py configs/phi3_5_mini/videoccam_phi3_5_mini_stage2.py \
#       --launcher pytorch --deepspeed configs/deepspeed/zero2_bf16.json
# Overrides (--cfg-options keys), memory and how to run: configs/README.md.
from mmengine.config import read_base

with read_base():
    from .videoccam_phi3_5_mini_stage1 import *  # noqa: F401,F403
    from .._base_.videoccam_stage2 import *  # noqa: F401,F403

#######################################################################
#                          PART 1  Settings                           #
#######################################################################
batch_size = 4  # per device
accumulative_counts = 4  # 8 GPUs x 4 x 4 = 128 samples per optimizer step
pretrained_pth = "work_dirs/videoccam_phi3_5_mini_stage1"  # stage-1 work dir (its last_checkpoint is loaded)

#######################################################################
#              PART 2-4  the values above, where they are read        #
#######################################################################
model.update(pretrained_pth=pretrained_pth, llm_lora=llm_lora, visual_encoder_lora=visual_encoder_lora)  # noqa: F405
train_dataloader.update(batch_size=batch_size, dataset=dict(  # noqa: F405
    data_path=None if data_sources else data_path, data_root=None if data_sources else data_root,  # noqa: F405
    data_sources=data_sources, mixture_seed=mixture_seed))  # noqa: F405
train_dataloader.sampler.per_device_batch_size = batch_size * accumulative_counts  # noqa: F405
optim_wrapper.update(accumulative_counts=accumulative_counts, optimizer=dict(lr=lr))  # noqa: F405
