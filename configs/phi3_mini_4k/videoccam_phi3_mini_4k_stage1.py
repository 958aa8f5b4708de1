# Video-CCAM stage 1 (feature alignment: only the CCAM projector trains) with Phi-3-mini-4k-instruct (3.8B).
# The recipe is configs/_base_/videoccam_stage1.py; this file holds the LLM block (read by the stage-2 config too).
#   torchrun --nproc_per_node=8 tools/train.py configs/phi3_mini_4k/videoccam_phi3_mini_4k_stage1.py \
#       --launcher pytorch --deepspeed configs/deepspeed/zero2_bf16.json
# Overrides (--cfg-options keys), memory and how to run: configs/README.md.
from mmengine.config import read_base
from xtuner.utils import PROMPT_TEMPLATE

with read_base():
    from .._base_.videoccam_stage1 import *  # noqa: F401,F403

#######################################################################
#                     PART 1  Settings: the LLM block                 #
#######################################################################
llm_name_or_path = "microsoft/Phi-3-mini-4k-instruct"
prompt_template = PROMPT_TEMPLATE.phi3_chat  # Phi-3 chat format: <|user|>\n{input}<|end|>\n<|assistant|>\n
llm_context = 4096
# The 4k context, capped by the sliding window: the LLM attends to the last 2,047 tokens only (sliding_window in
# its config.json), so from position 2047 + 1024 - 1 = 3070 on a token would see none of the 1,024 visual tokens.
max_length = 3070
text_budget = max_length - num_queries  # noqa: F405  (3070 - 1024 = 2046 text tokens with a video)
batch_size = 16  # per device
accumulative_counts = 2  # 8 GPUs x 16 x 2 = 256 samples per optimizer step

#######################################################################
#              PART 2-4  the values above, where they are read        #
#######################################################################
model.llm.pretrained_model_name_or_path = llm_name_or_path  # noqa: F405
tokenizer.pretrained_model_name_or_path = llm_name_or_path  # noqa: F405
train_dataloader.dataset.update(tokenizer=tokenizer, template=prompt_template, max_length=max_length)  # noqa: F405
train_dataloader.update(batch_size=batch_size, sampler=dict(per_device_batch_size=batch_size * accumulative_counts))  # noqa: F405,E501
optim_wrapper.accumulative_counts = accumulative_counts  # noqa: F405
