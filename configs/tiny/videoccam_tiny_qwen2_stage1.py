# Stage 1 (feature alignment) of the embedded default: tiny random Qwen2 LLM + tiny SigLIP, synthetic
# videos, CPU. Only the CCAM projector trains. Build the assets first:
#   python tools/make_tiny_models.py && python tools/make_synthetic_data.py
# then `xtuner train configs/tiny/videoccam_tiny_qwen2_stage1.py` (or tools/train.py, which exits non-zero
# on failure, unlike the xtuner CLI).
import torch
from mmengine.dataset import DefaultSampler
from mmengine.hooks import CheckpointHook, DistSamplerSeedHook, IterTimerHook, LoggerHook, ParamSchedulerHook
from mmengine.optim import CosineAnnealingLR, LinearLR, OptimWrapper
from torch.optim import AdamW
from transformers import AutoModelForCausalLM, AutoTokenizer, SiglipImageProcessor, SiglipVisionModel
from xtuner.engine.runner import TrainLoop
from xtuner.utils import PROMPT_TEMPLATE

from videoccam.dataset.collate import videoccam_collate_fn
from videoccam.dataset.dataset import VideoCCAMDataset
from videoccam.engine.hooks import SkippedSamplesHook
from videoccam.model.videoccam_model import VideoCCAMModel

#######################################################################
#                          PART 1  Settings                           #
#######################################################################
# Model
llm_name_or_path = "work_dirs/tiny_models/qwen2"
visual_encoder_name_or_path = "work_dirs/tiny_models/siglip"
pretrained_pth = None
num_queries = 32  # visual tokens per image or video
vision_chunk_size = 16
visual_select_layer = -2

# Data
data_root = "work_dirs/synthetic_data"
data_path = data_root + "/captions.json"
prompt_template = PROMPT_TEMPLATE.qwen_chat
llm_context = 512
max_length = llm_context  # whole sample, visual tokens included
num_frames = 16
on_error = "raise"

# Scheduler & Optimizer
batch_size = 4  # per device
accumulative_counts = 1
dataloader_num_workers = 0
max_epochs = 6
optim_type = AdamW
lr = 1e-3
betas = (0.9, 0.999)
weight_decay = 0
max_norm = 1  # grad clip
warmup_iters = 3  # iterations (the real recipes use a 3% ratio; tiny runs can be 2 iterations long)

# Save
save_steps = 50
save_total_limit = 1

#######################################################################
#            PART 2  Model & Tokenizer & Image Processor              #
#######################################################################
tokenizer = dict(
    type=AutoTokenizer.from_pretrained,
    pretrained_model_name_or_path=llm_name_or_path,
    trust_remote_code=True,
    padding_side="right",
)

image_processor = dict(
    type=SiglipImageProcessor.from_pretrained,
    pretrained_model_name_or_path=visual_encoder_name_or_path,
)

model = dict(
    type=VideoCCAMModel,
    freeze_llm=True,
    freeze_visual_encoder=True,
    pretrained_pth=pretrained_pth,
    visual_select_layer=visual_select_layer,
    vision_chunk_size=vision_chunk_size,
    use_activation_checkpointing=False,
    llm=dict(
        type=AutoModelForCausalLM.from_pretrained,
        pretrained_model_name_or_path=llm_name_or_path,
        torch_dtype=torch.float32,
        attn_implementation="sdpa",
    ),
    visual_encoder=dict(
        type=SiglipVisionModel.from_pretrained,
        pretrained_model_name_or_path=visual_encoder_name_or_path,
        torch_dtype=torch.float32,
    ),
    projector=dict(
        num_queries=num_queries,
        hidden_size=64,
        num_heads=4,
        intermediate_size=128,
        depth=1,
        dropout=0.0,
        attention_dropout=0.0,
        mask_mode="floor",
        self_attn="causal",
    ),
)

#######################################################################
#                      PART 3  Dataset & Dataloader                   #
#######################################################################
train_dataset = dict(
    type=VideoCCAMDataset,
    data_path=data_path,
    data_root=data_root,
    tokenizer=tokenizer,
    image_processor=image_processor,
    template=prompt_template,
    num_queries=num_queries,
    max_length=max_length,
    num_frames=num_frames,
    sampling="uniform",
    on_error=on_error,
)

train_dataloader = dict(
    batch_size=batch_size,
    num_workers=dataloader_num_workers,
    pin_memory=False,
    dataset=train_dataset,
    sampler=dict(type=DefaultSampler, shuffle=True),
    collate_fn=dict(type=videoccam_collate_fn),
)

#######################################################################
#                    PART 4  Scheduler & Optimizer                    #
#######################################################################
optim_wrapper = dict(
    type=OptimWrapper,  # AmpOptimWrapper(dtype="bfloat16") on GPUs
    optimizer=dict(type=optim_type, lr=lr, betas=betas, weight_decay=weight_decay),
    clip_grad=dict(max_norm=max_norm, error_if_nonfinite=False),
    accumulative_counts=accumulative_counts,
)

param_scheduler = [
    dict(type=LinearLR, start_factor=1e-3, by_epoch=False, begin=0, end=warmup_iters),
    dict(type=CosineAnnealingLR, eta_min=0.0, by_epoch=True, begin=0, end=max_epochs, convert_to_iter_based=True),
]

train_cfg = dict(type=TrainLoop, max_epochs=max_epochs)

#######################################################################
#                           PART 5  Runtime                           #
#######################################################################
custom_hooks = [dict(type=SkippedSamplesHook)]

default_hooks = dict(
    timer=dict(type=IterTimerHook),
    logger=dict(type=LoggerHook, log_metric_by_epoch=False, interval=5),
    param_scheduler=dict(type=ParamSchedulerHook),
    checkpoint=dict(type=CheckpointHook, by_epoch=False, interval=save_steps, max_keep_ckpts=save_total_limit),
    sampler_seed=dict(type=DistSamplerSeedHook),
)

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0),
    dist_cfg=dict(backend="gloo"),
)
# multi-process without DeepSpeed (`torchrun ... --launcher pytorch`): mmengine's default DDP wrapper passes
# device_ids=[local_rank], which DDP rejects for a CPU module; None lets DDP use the module's device (CPU or GPU).
# A registry name, not the class: mmengine's Runner.wrap_model looks the type up by string.
model_wrapper_cfg = dict(type="MMDistributedDataParallel", device_ids=None)

visualizer = None
log_level = "INFO"
load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)
log_processor = dict(by_epoch=False)
