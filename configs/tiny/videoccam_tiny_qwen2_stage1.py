# Stage 1 (feature alignment) of the embedded default: the stage-1 recipe (configs/_base_/videoccam_stage1.py) on a
# tiny random Qwen2 LLM + tiny SigLIP, synthetic videos, CPU. Only the CCAM projector trains. Build the assets
# first:
#   python tools/make_tiny_models.py && python tools/make_synthetic_data.py
# then `python tools/train.py configs/tiny/videoccam_tiny_qwen2_stage1.py`.
import torch
from mmengine.config import read_base
from mmengine.dataset import DefaultSampler
from mmengine.optim import CosineAnnealingLR, LinearLR, OptimWrapper
from xtuner.utils import PROMPT_TEMPLATE

with read_base():
    from .._base_.videoccam_stage1 import *  # noqa: F401,F403

#######################################################################
#                          PART 1  Settings                           #
#######################################################################
# Model: tiny, fp32, no activation checkpointing
llm_name_or_path = "work_dirs/tiny_models/qwen2"
visual_encoder_name_or_path = "work_dirs/tiny_models/siglip"
torch_dtype = torch.float32
use_activation_checkpointing = False
num_queries = 32  # visual tokens per image or video
num_frames = 8  # frames per training video (the real recipes: 16); 2 to 4 shapes, each on screen >= 2 frames
vision_chunk_size = 16
projector_hidden_size = 64
projector_num_heads = 4
projector_intermediate_size = 128
projector_dropout = 0.0

# Data
data_root = "work_dirs/synthetic_data"
data_path = data_root + "/captions.json"
prompt_template = PROMPT_TEMPLATE.qwen_chat
llm_context = 512
max_length = llm_context  # whole sample, visual tokens included
text_budget = max_length - num_queries
on_error = "raise"
dataloader_num_workers = 0

# Scheduler & Optimizer: one CPU process (OptimWrapper, not AMP; gloo), a few epochs
num_gpus = 1  # one process (what tools/plan_memory.py assumes)
batch_size = 8  # per device
accumulative_counts = 1
global_batch_size = num_gpus * batch_size * accumulative_counts
max_epochs = 12
warmup_iters = 20  # iterations (the real recipes use a 3% ratio; tiny runs can be 2 iterations long)

# Save
save_steps = 2000
save_total_limit = 1
log_interval = 10

#######################################################################
#              PART 2-5  the values above, where they are read        #
#######################################################################
tokenizer.pretrained_model_name_or_path = llm_name_or_path  # noqa: F405
image_processor.pretrained_model_name_or_path = visual_encoder_name_or_path  # noqa: F405
model.update(  # noqa: F405
    use_activation_checkpointing=use_activation_checkpointing,
    vision_chunk_size=vision_chunk_size,
    llm=dict(pretrained_model_name_or_path=llm_name_or_path, torch_dtype=torch_dtype),
    visual_encoder=dict(pretrained_model_name_or_path=visual_encoder_name_or_path, torch_dtype=torch_dtype),
    projector=dict(num_queries=num_queries, hidden_size=projector_hidden_size, num_heads=projector_num_heads,
                   intermediate_size=projector_intermediate_size, dropout=projector_dropout,
                   attention_dropout=projector_dropout),
)
train_dataloader.update(  # noqa: F405
    batch_size=batch_size,
    num_workers=dataloader_num_workers,
    pin_memory=False,
    dataset=dict(data_path=data_path, data_root=data_root, tokenizer=tokenizer, image_processor=image_processor,
                 template=prompt_template, num_queries=num_queries, num_frames=num_frames, max_length=max_length,
                 on_error=on_error),
)
train_dataloader.sampler = dict(type=DefaultSampler, shuffle=True)  # noqa: F405  (plain shuffling: tiny batches)
optim_wrapper.update(type=OptimWrapper, accumulative_counts=accumulative_counts)  # noqa: F405  (AMP needs a GPU)
optim_wrapper.pop("dtype")  # noqa: F405  (OptimWrapper takes no dtype)
param_scheduler = [
    dict(type=LinearLR, start_factor=1e-3, by_epoch=False, begin=0, end=warmup_iters),
    dict(type=CosineAnnealingLR, eta_min=0.0, by_epoch=True, begin=0, end=max_epochs, convert_to_iter_based=True),
]
train_cfg.max_epochs = max_epochs  # noqa: F405
default_hooks.logger.interval = log_interval  # noqa: F405
default_hooks.checkpoint.update(interval=save_steps, max_keep_ckpts=save_total_limit)  # noqa: F405
env_cfg.dist_cfg.backend = "gloo"  # noqa: F405
# multi-process without DeepSpeed (`torchrun ... --launcher pytorch`): mmengine's default DDP wrapper passes
# device_ids=[local_rank], which DDP rejects for a CPU module; None lets DDP use the module's device (CPU or GPU).
# A registry name, not the class: mmengine's Runner.wrap_model looks the type up by string.
model_wrapper_cfg = dict(type="MMDistributedDataParallel", device_ids=None)
randomness.seed = 0  # noqa: F405
