# Fine-tune the released Video-CCAM-7B-v1.2 (huggingface.co/JaronTHU/Video-CCAM-7B-v1.2) on your own video QA data.
# Its release is one folder (config.json with model_type "videoccam" and an auto_map to its own
# modeling_videoccam.py; Qwen2.5-7B-Instruct inside): the model is built by its own code, its LLM, vision tower and
# projector are found by type and role and load their own weights; new LoRA adapters train on the LLM and on
# SigLIP, and the projector trains, as in stage 2 (README "Fine-tune a released Video-CCAM model"; the LLM block,
# batch, adapters and memory are those of the qwen2_5_7b stage-2 recipe).
#   huggingface-cli download JaronTHU/Video-CCAM-7B-v1.2 --local-dir checkpoints/Video-CCAM-7B-v1_2
#   xtuner train configs/released/videoccam_7b_v1_2_finetune.py --deepspeed configs/deepspeed/zero2_bf16.json
#   python tools/convert_to_hf.py configs/released/videoccam_7b_v1_2_finetune.py \
#       work_dirs/videoccam_7b_v1_2_finetune OUT --save-format released
from mmengine.config import read_base
from transformers import AutoTokenizer, SiglipImageProcessor

from videoccam.model.released import released_folder_part

with read_base():
    from ..qwen2_5_7b.videoccam_qwen2_5_7b_stage2 import *  # noqa: F401,F403

#######################################################################
#                          PART 1  Settings                           #
#######################################################################
released_path = "checkpoints/Video-CCAM-7B-v1_2"  # no dot in the folder name (transformers 4.48 remote-code imports)
data_path = "data/my_videos/train.jsonl"  # your data (data/README.md); media paths relative to data_root
data_root = "data/my_videos"
num_queries = 1024  # LLM tokens per image or video: projector_config.num_query in the release's config.json
lr = 5e-5  # a quarter of stage 2's: the model is trained already
max_epochs = 1

#######################################################################
#              PART 2-5  the values above, where they are read        #
#######################################################################
# the release's tokenizer (its <image>/<video> tokens and chat template) and image processor
tokenizer = dict(type=AutoTokenizer.from_pretrained, pretrained_model_name_or_path=released_path,
                 trust_remote_code=True, padding_side="right")  # fmt: skip
image_processor = dict(type=SiglipImageProcessor.from_pretrained, pretrained_model_name_or_path=released_path)
model.llm = dict(  # noqa: F405  (assigned, not updated: update() would merge into the stage-2 builder dict)
    type=released_folder_part, released_path=released_path, role="llm", torch_dtype=torch_dtype,  # noqa: F405
    attn_implementation=attn_implementation,  # noqa: F405
)
model.visual_encoder = dict(  # noqa: F405
    type=released_folder_part, released_path=released_path, role="visual_encoder",
    torch_dtype=torch_dtype, attn_implementation=attn_implementation,  # noqa: F405
)
model.projector = dict(type=released_folder_part, released_path=released_path, role="projector")  # noqa: F405
model.pretrained_pth = None  # noqa: F405
train_dataloader.dataset.update(  # noqa: F405
    data_path=data_path, data_root=data_root, num_queries=num_queries, tokenizer=tokenizer,
    image_processor=image_processor,
)
optim_wrapper.optimizer.lr = lr  # noqa: F405
train_cfg.max_epochs = max_epochs  # noqa: F405
param_scheduler[0].end = warmup_ratio * max_epochs  # noqa: F405
param_scheduler[1].update(begin=warmup_ratio * max_epochs, end=max_epochs)  # noqa: F405
