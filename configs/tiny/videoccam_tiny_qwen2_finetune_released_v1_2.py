# Fine-tune a released Video-CCAM v1.2 model (one folder: config.json with model_type "videoccam" and an auto_map
# to the release's own modeling_videoccam.py) on your own data, the tiny way: the release is the tiny replica
# that tools/make_released_replicas.py writes (remote code that is not this project's), the data data/example.
#   python tools/make_released_replicas.py && python tools/make_example_data.py
#   python tools/train.py configs/tiny/videoccam_tiny_qwen2_finetune_released_v1_2.py --work-dir work_dirs/finetune_v1_2
#   python tools/convert_to_hf.py configs/tiny/videoccam_tiny_qwen2_finetune_released_v1_2.py \
#       work_dirs/finetune_v1_2 OUT --save-format released    # a folder that loads as the release does
# The release is built by its own code; its LLM, vision tower and projector are found by type and role
# (videoccam.model.released.find_parts) and load their own weights. New LoRA adapters train on the LLM and the
# vision tower, and the projector trains, as in stage 2. The real configs: configs/released/.
import torch
from mmengine.config import read_base
from transformers import AutoTokenizer, SiglipImageProcessor
from xtuner.utils import PROMPT_TEMPLATE

from videoccam.model.released import released_folder_part

with read_base():
    from .videoccam_tiny_qwen2_stage2 import *  # noqa: F401,F403

#######################################################################
#                          PART 1  Settings                           #
#######################################################################
released_path = "work_dirs/released_replicas/v1_2"  # the release (a local folder): its tokenizer, weights, code
prompt_template = PROMPT_TEMPLATE.qwen_chat  # the release's chat format (phi3_chat for Video-CCAM-4B-v1.2)
num_queries = 16  # LLM tokens per image or video = the release's projector_config num_query
visual_select_layer = -2  # the SigLIP layer the release's projector reads (hidden_states[-2] in the family)
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
tokenizer = dict(type=AutoTokenizer.from_pretrained, pretrained_model_name_or_path=released_path,
                 trust_remote_code=True, padding_side="right")  # fmt: skip
image_processor = dict(type=SiglipImageProcessor.from_pretrained, pretrained_model_name_or_path=released_path)
model.llm = dict(  # noqa: F405  (assigned, not updated: update() would merge into the stage-2 builder dict)
    type=released_folder_part, released_path=released_path, role="llm", torch_dtype=torch_dtype,
    attn_implementation="sdpa",
)
model.visual_encoder = dict(  # noqa: F405
    type=released_folder_part, released_path=released_path, role="visual_encoder", torch_dtype=torch_dtype
)
model.projector = dict(type=released_folder_part, released_path=released_path, role="projector")  # noqa: F405
model.visual_select_layer = visual_select_layer  # noqa: F405
model.pretrained_pth = None  # noqa: F405
train_dataloader.update(batch_size=batch_size)  # noqa: F405
train_dataloader.dataset.update(  # noqa: F405
    data_path=data_path, data_root=data_root, tokenizer=tokenizer, image_processor=image_processor,
    template=prompt_template, num_queries=num_queries, on_error=on_error,
)
optim_wrapper.optimizer.lr = lr  # noqa: F405
train_cfg.max_epochs = max_epochs  # noqa: F405
param_scheduler[0].end = warmup_iters  # noqa: F405
param_scheduler[1].end = max_epochs  # noqa: F405
default_hooks.checkpoint.interval = save_steps  # noqa: F405
