# Fine-tuning a released Video-CCAM model on your own video QA data: what every configs/released/*_finetune.py
# shares. Not a config on its own: a released config reads its base LLM's stage-2 recipe (template, context,
# batch, memory) and then this file with `read_base()`, takes the model of its release's layout, sets
# `released_path` (v1.0 / v1.1: and the base LLM) and copies part 1 to the keys that read it (configs/README.md,
# "Fine-tuning a released model").
#
# The two layouts of the releases (design.md section 8; README "Fine-tune a released Video-CCAM model"):
# * `xtuner_layout_model`, v1.0 / v1.1 (llm_adapter/, visual_encoder_adapter/, projector/ with its own code): the
#   base LLM and SigLIP with the released adapters, which train further (no new adapters), and the released
#   projector, loaded with its own code, which trains;
# * `folder_model`, v1.2 (one folder whose config.json maps to its own modeling_videoccam.py): its LLM, vision
#   tower and projector, found by type and role, each loading its own weights; new LoRA adapters train on the LLM
#   and on SigLIP, and the projector trains, as in stage 2.
from mmengine.config import read_base

from videoccam.model.released import released_folder_part, released_llm, released_projector, released_visual_encoder
from videoccam.model.videoccam_model import VideoCCAMModel

with read_base():
    # the recipe values no LLM family changes (a base cannot see the values of the file that reads it)
    from .videoccam_stage1 import (
        attn_implementation,
        torch_dtype,
        trust_remote_code,
        use_activation_checkpointing,
        vision_chunk_size,
        visual_encoder_name_or_path,
        visual_select_layer,
    )
    from .videoccam_stage2 import llm_lora, visual_encoder_lora

#######################################################################
#                          PART 1  Settings                           #
#######################################################################
released_path = None  # the downloaded release (a local folder, no dot in its name): each released config sets it
data_path = "data/my_videos/train.jsonl"  # your data (data/README.md); media paths relative to data_root
data_root = "data/my_videos"
num_queries = 1024  # LLM tokens per image or video: num_query of the release's projector config
lr = 5e-5  # a quarter of stage 2's: the release is trained already
max_epochs = 1

#######################################################################
#                PART 2  the model, in each release layout            #
#######################################################################
shared = dict(  # both layouts: the towers frozen but for their adapters, nothing loaded on top of the release
    type=VideoCCAMModel,
    freeze_llm=True,
    freeze_visual_encoder=True,
    pretrained_pth=None,
    visual_select_layer=visual_select_layer,
    vision_chunk_size=vision_chunk_size,
    use_activation_checkpointing=use_activation_checkpointing,
)
xtuner_layout_model = dict(
    shared,
    llm=dict(type=released_llm, released_path=released_path, llm_name_or_path=None, torch_dtype=torch_dtype,
             attn_implementation=attn_implementation, trust_remote_code=trust_remote_code),  # fmt: skip
    visual_encoder=dict(type=released_visual_encoder, released_path=released_path,
                        visual_encoder_name_or_path=visual_encoder_name_or_path, torch_dtype=torch_dtype,
                        attn_implementation=attn_implementation),  # fmt: skip
    projector=dict(type=released_projector, released_path=released_path),  # in its saved dtype; trains in fp32
    llm_lora=None,  # the released adapters train further
    visual_encoder_lora=None,
)
folder_model = dict(
    shared,
    llm=dict(type=released_folder_part, released_path=released_path, role="llm", torch_dtype=torch_dtype,
             attn_implementation=attn_implementation),  # fmt: skip
    visual_encoder=dict(type=released_folder_part, released_path=released_path, role="visual_encoder",
                        torch_dtype=torch_dtype, attn_implementation=attn_implementation),  # fmt: skip
    projector=dict(type=released_folder_part, released_path=released_path, role="projector"),
    llm_lora=llm_lora,  # new adapters, as in stage 2
    visual_encoder_lora=visual_encoder_lora,
)
del shared
