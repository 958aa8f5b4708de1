# Video-CCAM stage 1 (feature alignment: only the CCAM projector trains) with Qwen2.5-7B-Instruct (7.6B).
# The recipe is configs/_base_/videoccam_stage1.py; this file holds the LLM block (read by the stage-2 config too).
#   torchrun --nproc_per_node=8 tools/train.py configs/qwen2_5_7b/videoccam_qwen2_5_7b_stage1.py \
#       --launcher pytorch --deepspeed configs/deepspeed/zero2_bf16.json
# Overrides (--cfg-options keys), memory and how to run: configs/README.md.
from mmengine.config import read_base
from xtuner.utils import PROMPT_TEMPLATE

with read_base():
    from .._base_.videoccam_stage1 import *  # noqa: F401,F403

#######################################################################
#                     PART 1  Settings: the LLM block                 #
#######################################################################
llm_name_or_path = "Qwen/Qwen2.5-7B-Instruct"
prompt_template = PROMPT_TEMPLATE.qwen_chat  # ChatML: <|im_start|>user\n{input}<|im_end|>\n<|im_start|>assistant\n
llm_context = 32768
max_length = 8192  # 8k of the 32k context (activation memory grows with it)
text_budget = max_length - num_queries  # noqa: F405  (8192 - 1024 = 7168 text tokens with a video)
batch_size = 2  # per device
accumulative_counts = 16  # 8 GPUs x 2 x 16 = 256 samples per optimizer step

#######################################################################
#              PART 2-4  the values above, where they are read        #
#######################################################################
model.llm.pretrained_model_name_or_path = llm_name_or_path  # noqa: F405
tokenizer.pretrained_model_name_or_path = llm_name_or_path  # noqa: F405
train_dataloader.dataset.update(tokenizer=tokenizer, template=prompt_template, max_length=max_length)  # noqa: F405
train_dataloader.update(batch_size=batch_size, sampler=dict(per_device_batch_size=batch_size * accumulative_counts))  # noqa: F405,E501
optim_wrapper.accumulative_counts = accumulative_counts  # noqa: F405
