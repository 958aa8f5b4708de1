# Video-CCAM stage 2 on ONE 24 GB GPU (QLoRA): the Phi-3-mini-4k stage-2 recipe with the LLM loaded in 4 bit
# (bitsandbytes NF4, double quantisation, bf16 compute), the same LoRA adapters on the LLM and SigLIP, and the
# same global batch of 128 reached by gradient accumulation (1 GPU x 1 sample x 128 steps).
#
#   python tools/train.py configs/phi3_mini_4k/videoccam_phi3_mini_4k_stage2_qlora_1x24gb.py
#   python tools/plan_memory.py configs/phi3_mini_4k/videoccam_phi3_mini_4k_stage2_qlora_1x24gb.py --gpus 1 --zero 0
#
# Needs a CUDA GPU and bitsandbytes>=0.45.1,<0.46 (`bash tools/install.sh gpu`); on a machine without CUDA the
# model refuses to start with that message. Runs without DeepSpeed (mmengine AmpOptimWrapper, bf16 autocast).
# The LLM LoRA rank is 256 (alpha 128: the same alpha/r = 0.5 scaling) instead of the 8-GPU recipe's 512: with
# r=512 the adapters alone (805 M params; fp32 weights, gradients and AdamW moments: 13 GB) leave too little room
# for activations on 24 GB. The planner estimates 16.7 GiB at r=256 and 23.4 GiB at r=512 (configs/README.md).
# Overrides (--cfg-options keys): configs/README.md; drop the quantisation with
# --cfg-options model.llm.quantization_config=None.
import torch
from mmengine.config import read_base
from transformers import BitsAndBytesConfig

with read_base():
    from .videoccam_phi3_mini_4k_stage2 import *  # noqa: F401,F403

#######################################################################
#                          PART 1  Settings                           #
#######################################################################
num_gpus = 1
batch_size = 1  # per device
accumulative_counts = 128  # 1 GPU x 1 x 128 = 128 samples per optimizer step
dataloader_num_workers = 4
llm_lora_r = 256
llm_lora_alpha = 128
quantization_config = dict(
    type=BitsAndBytesConfig,
    load_in_4bit=True,
    load_in_8bit=False,
    llm_int8_threshold=6.0,
    llm_int8_has_fp16_weight=False,
    bnb_4bit_compute_dtype=torch.bfloat16,
    bnb_4bit_use_double_quant=True,
    bnb_4bit_quant_type="nf4",
)

#######################################################################
#              PART 2-4  the values above, where they are read        #
#######################################################################
model.llm.quantization_config = quantization_config  # noqa: F405
model.llm_lora.r = llm_lora_r  # noqa: F405
model.llm_lora.lora_alpha = llm_lora_alpha  # noqa: F405
train_dataloader.batch_size = batch_size  # noqa: F405
train_dataloader.sampler.per_device_batch_size = batch_size * accumulative_counts  # noqa: F405
optim_wrapper.accumulative_counts = accumulative_counts  # noqa: F405
