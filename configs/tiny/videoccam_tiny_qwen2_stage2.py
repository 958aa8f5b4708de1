# Stage 2 (visual instruction tuning) of the embedded default: the tiny stage 1 plus the stage-2 additions of
# configs/_base_/videoccam_stage2.py (the projector keeps training, LoRA adapters on the LLM and on SigLIP), with
# tiny adapters. Starts from stage 1's checkpoint: pretrained_pth may be a .pth file, a DeepSpeed checkpoint
# folder, or a work dir (its `last_checkpoint` is used).
from mmengine.config import read_base

with read_base():
    from .videoccam_tiny_qwen2_stage1 import *  # noqa: F401,F403
    from .._base_.videoccam_stage2 import *  # noqa: F401,F403

#######################################################################
#                          PART 1  Settings                           #
#######################################################################
pretrained_pth = "work_dirs/videoccam_tiny_qwen2_stage1"  # tools/train.py's default work dir for stage 1
data_root = "work_dirs/synthetic_data"
data_path = data_root + "/train.json"
global_batch_size = num_gpus * batch_size * accumulative_counts  # noqa: F405
lr = 2e-4 * 10  # tiny random models learn slowly at the real recipe's 2e-4
max_epochs = 20
llm_lora_r, llm_lora_alpha = 16, 32
visual_encoder_lora_r, visual_encoder_lora_alpha = 8, 16
sample_interval = 400  # sample answers (the first video and image of the data) every 400 iterations and at the end
sample_max_new_tokens = 16

#######################################################################
#              PART 2-4  the values above, where they are read        #
#######################################################################
llm_lora.update(r=llm_lora_r, lora_alpha=llm_lora_alpha)  # noqa: F405
visual_encoder_lora.update(r=visual_encoder_lora_r, lora_alpha=visual_encoder_lora_alpha)  # noqa: F405
model.update(pretrained_pth=pretrained_pth, llm_lora=llm_lora, visual_encoder_lora=visual_encoder_lora)  # noqa: F405
train_dataloader.dataset.update(  # noqa: F405
    data_path=None if data_sources else data_path, data_root=None if data_sources else data_root,  # noqa: F405
    data_sources=data_sources, mixture_seed=mixture_seed)  # noqa: F405
optim_wrapper.optimizer.lr = lr  # noqa: F405
train_cfg.max_epochs = max_epochs  # noqa: F405
param_scheduler[1].end = max_epochs  # noqa: F405

#######################################################################
#              PART 5  the values above, where they are read          #
#######################################################################
# SampleAnswersHook
custom_hooks[-1].update(interval=sample_interval, max_new_tokens=sample_max_new_tokens)  # noqa: F405
