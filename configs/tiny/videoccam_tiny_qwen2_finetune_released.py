# Fine-tune a released Video-CCAM v1.0 / v1.1 model (xtuner's layout: llm_adapter/, visual_encoder_adapter/,
# projector/ with its own code) on your own data, the tiny way: the release is the tiny replica that
# tools/make_released_replicas.py writes (remote code that is not this project's), the data data/example.
#   python tools/make_released_replicas.py && python tools/make_example_data.py
#   python tools/train.py configs/tiny/videoccam_tiny_qwen2_finetune_released.py --work-dir work_dirs/finetune_released
#   python tools/convert_to_hf.py configs/tiny/videoccam_tiny_qwen2_finetune_released.py \
#       work_dirs/finetune_released OUT --save-format released     # back to the released layout (or: huggingface)
# The base LLM and SigLIP plus the released LoRA adapters load as upstream's v1.0 loader loads them (PeftModel),
# and those adapters train further (no new ones); the released projector loads with its own code
# (AutoModel, trust_remote_code) and trains. The real configs: configs/released/ (README "Fine-tune a released
# Video-CCAM model").
import torch
from mmengine.config import read_base
from xtuner.utils import PROMPT_TEMPLATE

from videoccam.model.released import released_llm, released_projector, released_visual_encoder
from videoccam.model.videoccam_model import VideoCCAMModel

with read_base():
    from .videoccam_tiny_qwen2_stage2 import *  # noqa: F401,F403

#######################################################################
#                          PART 1  Settings                           #
#######################################################################
# The release (a local folder) and the base models it was trained on
released_path = "work_dirs/released_replicas/v1_0"
llm_name_or_path = "work_dirs/released_replicas/base/qwen2"  # e.g. microsoft/Phi-3-mini-4k-instruct for Video-CCAM-4B
visual_encoder_name_or_path = "work_dirs/released_replicas/base/siglip"  # google/siglip-so400m-patch14-384
prompt_template = PROMPT_TEMPLATE.qwen_chat  # the release's chat format (phi3_chat for the Phi-3 models)
num_queries = 16  # LLM tokens per image or video = num_query in the released projector's config.json
visual_select_layer = -2
torch_dtype = torch.float32  # torch.bfloat16 on GPUs

# Data (data/README.md): paths in the records are relative to data_root
data_root = "data/example"
data_path = data_root + "/train.jsonl"
on_error = "raise"

# Optimisation: 12 samples x 5 epochs / batch 3 = 20 iterations
lr = 1e-3
batch_size = 3
max_epochs = 5
warmup_iters = 3  # iterations (the quickstart's stages: 20)
save_steps = 20

#######################################################################
#              PART 2-5  the values above, where they are read        #
#######################################################################
tokenizer.pretrained_model_name_or_path = llm_name_or_path  # noqa: F405
image_processor.pretrained_model_name_or_path = visual_encoder_name_or_path  # noqa: F405
model = dict(
    type=VideoCCAMModel,
    llm=dict(type=released_llm, released_path=released_path, llm_name_or_path=llm_name_or_path,
             torch_dtype=torch_dtype, attn_implementation="sdpa"),
    visual_encoder=dict(type=released_visual_encoder, released_path=released_path,
                        visual_encoder_name_or_path=visual_encoder_name_or_path, torch_dtype=torch_dtype),
    projector=dict(type=released_projector, released_path=released_path),
    llm_lora=None,  # the released adapters train further
    visual_encoder_lora=None,
    freeze_llm=True,
    freeze_visual_encoder=True,
    visual_select_layer=visual_select_layer,
    vision_chunk_size=vision_chunk_size,  # noqa: F405
    use_activation_checkpointing=use_activation_checkpointing,  # noqa: F405
    pretrained_pth=None,
)
train_dataloader.update(batch_size=batch_size)  # noqa: F405
train_dataloader.dataset.update(  # noqa: F405
    data_path=data_path, data_root=data_root, tokenizer=tokenizer, image_processor=image_processor,  # noqa: F405
    template=prompt_template, num_queries=num_queries, on_error=on_error,
)
optim_wrapper.optimizer.lr = lr  # noqa: F405
train_cfg.max_epochs = max_epochs  # noqa: F405
param_scheduler[0].end = warmup_iters  # noqa: F405
param_scheduler[1].end = max_epochs  # noqa: F405
default_hooks.checkpoint.interval = save_steps  # noqa: F405
