# Shared stage-1 recipe (feature alignment) of the released Video-CCAM family: SigLIP-SO400M-patch14-384 +
# CCAM projector + an LLM. Only the projector trains; SigLIP and the LLM are frozen (design.md section 3).
#
# Do not train this file directly: use a per-model config (configs/<model>/videoccam_<model>_stage1.py), which
# reads this one with mmengine's `read_base()`, sets the LLM block of part 1 (LLM id, chat template, context,
# per-device batch) and copies those values to the keys of parts 2-4 that read them. Everything else lives here
# once; the stage-2 additions are in videoccam_stage2.py. Layout, overrides (--cfg-options keys) and how to run:
# configs/README.md.
#
# Hyper-parameters: xtuner's LLaVA pretrain defaults (design.md section 3): AdamW lr 1e-3, no weight decay,
# 3% linear warm-up then cosine, 1 epoch, grad clip 1.0, global batch 256 = num_gpus x batch_size x
# accumulative_counts, bf16 (AmpOptimWrapper; DeepSpeed's bf16 when run with --deepspeed), nccl.
# Projector: the released 7B sizes (design.md section 2): 1024 queries, hidden 1024, 16 heads, SwiGLU 4096,
# dropout 0.1. 16 frames per training video, all 729 SigLIP patches of hidden_states[-2].
#
# GPU-only settings and their CPU behaviour: `attn_implementation="flash_attention_2"` (needs flash-attn and a
# CUDA GPU; the default "sdpa" runs everywhere), `AmpOptimWrapper` and `nccl` (use OptimWrapper / gloo on CPU).
# VideoCCAMModel refuses flash-attention / 4-bit settings on a machine without CUDA with a message saying so.
import torch
from mmengine.hooks import CheckpointHook, DistSamplerSeedHook, IterTimerHook, LoggerHook, ParamSchedulerHook
from mmengine.optim import AmpOptimWrapper, CosineAnnealingLR, LinearLR
from torch.optim import AdamW
from transformers import AutoModelForCausalLM, AutoTokenizer, SiglipImageProcessor, SiglipVisionModel
from xtuner.dataset.samplers import LengthGroupedSampler

from videoccam.dataset.collate import videoccam_collate_fn
from videoccam.dataset.dataset import VideoCCAMDataset
from videoccam.engine.hooks import SkippedSamplesHook
from videoccam.engine.loops import TokenMeanTrainLoop
from videoccam.engine.sample_answers import SampleAnswersHook
from videoccam.engine.throughput import ThroughputHook
from videoccam.engine.visualizer import TrainingVisualizer
from videoccam.model.videoccam_model import VideoCCAMModel

#######################################################################
#                          PART 1  Settings                           #
#######################################################################
# LLM block: every per-model config sets these (None here on purpose: the base is not a runnable recipe).
llm_name_or_path = None  # hub id or local folder
prompt_template = None  # xtuner PROMPT_TEMPLATE entry matching the LLM's chat format (its STOP_WORDS end replies)
llm_context = 4096  # the LLM's context window (tokens)
max_length = 4096  # LLM tokens per training sample, visual tokens included (<= llm_context)
batch_size = 1  # per device
accumulative_counts = 1

# Vision + projector (shared by the whole family)
visual_encoder_name_or_path = "google/siglip-so400m-patch14-384"
pretrained_pth = None  # stage 1 starts from the pretrained LLM and SigLIP; the projector is new
torch_dtype = torch.bfloat16  # LLM and SigLIP weights
attn_implementation = "sdpa"  # "flash_attention_2" if flash-attn is installed (CUDA only)
trust_remote_code = False  # all five LLM families and SigLIP are native transformers 4.48 classes
use_activation_checkpointing = True
visual_select_layer = -2  # hidden_states[-2], all 729 patches (SigLIP has no CLS token)
vision_chunk_size = 32  # frames per SigLIP forward
num_queries = 1024  # visual tokens per image or video
projector_hidden_size = 1024
projector_num_heads = 16
projector_intermediate_size = 4096
projector_depth = 1
projector_dropout = 0.1
text_budget = max_length - num_queries  # text tokens left in a sample with one image or video

# Data: LLaVA-Pretrain-558K captions (+ video captions in the same format, design.md section 4).
# Media paths inside data_path are relative to data_root.
data_path = "data/llava_pretrain/blip_laion_cc_sbu_558k.json"
data_root = "data/llava_pretrain/images"
num_frames = 16  # frames per training video (uniform segment midpoints)
sampling = "uniform"
on_error = "skip"  # bad records are dropped, logged and listed in <work_dir>/skipped_samples.json
dataloader_num_workers = 4
# Each data file is checked and tokenised once into an index (data/README.md, "The tokenised index"), built by
# the first run (or tools/build_index.py CONFIG) and reused while nothing it depends on changes.
index_dir = None  # None: $VIDEOCCAM_INDEX_DIR, else ~/.cache/videoccam/index
index_workers = None  # processes that build a missing index (None: the CPU count, at most 16)

# Scheduler & Optimizer. Global batch = num_gpus x batch_size x accumulative_counts.
num_gpus = 8  # what the per-device batch sizes of the model configs assume
global_batch_size = 256
max_epochs = 1
optim_type = AdamW
lr = 1e-3
betas = (0.9, 0.999)
weight_decay = 0
max_norm = 1  # grad clip
warmup_ratio = 0.03

# Save
save_steps = 512  # a multiple of accumulative_counts (every recipe's: 2 to 128): no checkpoint inside an optimizer step
save_total_limit = 2  # keep the last 2 checkpoints (-1: all)
log_interval = 10

# Watch the run (part 5). Curves: json scalars in <work_dir>/<timestamp>/vis_data/ (tools/plot_logs.py) and
# TensorBoard event files beside them (tensorboard is part of the default install; --cfg-options
# visualizer.tensorboard=False turns them off). Throughput (samples/tokens/frames per second, data wait,
# TFLOP/s per device) is logged with the loss. Sample answers: every sample_interval iterations and at the end
# the model answers sample_questions (dict(video=PATH, question=TEXT) or dict(image=PATH, question=TEXT), paths
# relative to data_root; [] = the first video and the first image record of the data); 0 = off, costs nothing.
tensorboard = True
sample_interval = 0
sample_questions = []
sample_num_frames = None  # frames per video (None: num_frames)
sample_max_new_tokens = 64

#######################################################################
#            PART 2  Model & Tokenizer & Image Processor              #
#######################################################################
tokenizer = dict(
    type=AutoTokenizer.from_pretrained,
    pretrained_model_name_or_path=llm_name_or_path,
    trust_remote_code=trust_remote_code,
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
    use_activation_checkpointing=use_activation_checkpointing,
    llm=dict(
        type=AutoModelForCausalLM.from_pretrained,
        pretrained_model_name_or_path=llm_name_or_path,
        trust_remote_code=trust_remote_code,
        torch_dtype=torch_dtype,
        attn_implementation=attn_implementation,
    ),
    visual_encoder=dict(
        type=SiglipVisionModel.from_pretrained,
        pretrained_model_name_or_path=visual_encoder_name_or_path,
        torch_dtype=torch_dtype,
        attn_implementation=attn_implementation,
    ),
    projector=dict(  # CCAMProjectorConfig fields; cross_hidden_size / output_size come from SigLIP / the LLM
        num_queries=num_queries,
        hidden_size=projector_hidden_size,
        num_heads=projector_num_heads,
        intermediate_size=projector_intermediate_size,
        depth=projector_depth,
        dropout=projector_dropout,
        attention_dropout=projector_dropout,
        mask_mode="floor",
        self_attn="causal",
    ),
)

#######################################################################
#                      PART 3  Dataset & Dataloader                   #
#######################################################################
train_dataloader = dict(
    batch_size=batch_size,
    num_workers=dataloader_num_workers,
    pin_memory=True,
    dataset=dict(
        type=VideoCCAMDataset,
        data_path=data_path,
        data_root=data_root,
        tokenizer=tokenizer,
        image_processor=image_processor,
        template=prompt_template,
        num_queries=num_queries,
        max_length=max_length,
        num_frames=num_frames,
        sampling=sampling,
        on_error=on_error,
        index_dir=index_dir,
        index_workers=index_workers,
    ),
    # Every image or video costs exactly num_queries LLM tokens, so modality_length is the exact LLM length;
    # grouping by it keeps padding low. Mega-batches span one optimizer step (batch x accumulation).
    sampler=dict(
        type=LengthGroupedSampler,
        length_property="modality_length",
        per_device_batch_size=batch_size * accumulative_counts,
    ),
    collate_fn=dict(type=videoccam_collate_fn),
)

#######################################################################
#                    PART 4  Scheduler & Optimizer                    #
#######################################################################
optim_wrapper = dict(  # replaced by DeepSpeed's (bf16 from the json) when run with --deepspeed
    type=AmpOptimWrapper,
    optimizer=dict(type=optim_type, lr=lr, betas=betas, weight_decay=weight_decay),
    clip_grad=dict(max_norm=max_norm, error_if_nonfinite=False),
    accumulative_counts=accumulative_counts,
    dtype="bfloat16",
)

param_scheduler = [
    dict(
        type=LinearLR,
        start_factor=1e-5,
        by_epoch=True,
        begin=0,
        end=warmup_ratio * max_epochs,
        convert_to_iter_based=True,
    ),
    dict(
        type=CosineAnnealingLR,
        eta_min=0.0,
        by_epoch=True,
        begin=warmup_ratio * max_epochs,
        end=max_epochs,
        convert_to_iter_based=True,
    ),
]

# xtuner's TrainLoop, with the loss of each optimizer step the mean over all its answer tokens (every
# micro-batch of the accumulation and every rank), not a mean of per-micro-batch means
train_cfg = dict(type=TokenMeanTrainLoop, max_epochs=max_epochs)

#######################################################################
#                           PART 5  Runtime                           #
#######################################################################
custom_hooks = [
    dict(type=SkippedSamplesHook),
    dict(type=ThroughputHook),
    # keep it last: configs change it as custom_hooks[-1] (e.g. configs/tiny/videoccam_tiny_qwen2_stage2.py)
    dict(type=SampleAnswersHook, interval=sample_interval, samples=sample_questions, num_frames=sample_num_frames,
         max_new_tokens=sample_max_new_tokens),
]

default_hooks = dict(
    timer=dict(type=IterTimerHook),
    logger=dict(type=LoggerHook, log_metric_by_epoch=False, interval=log_interval),
    param_scheduler=dict(type=ParamSchedulerHook),
    checkpoint=dict(type=CheckpointHook, by_epoch=False, interval=save_steps, max_keep_ckpts=save_total_limit),
    sampler_seed=dict(type=DistSamplerSeedHook),
)

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0),
    dist_cfg=dict(backend="nccl"),
)

visualizer = dict(type=TrainingVisualizer, tensorboard=tensorboard)  # json scalars (+ TensorBoard if installed)
log_level = "INFO"
load_from = None
resume = False
randomness = dict(seed=None, deterministic=False)
log_processor = dict(by_epoch=False)
