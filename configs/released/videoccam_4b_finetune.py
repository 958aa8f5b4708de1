# Fine-tune the released Video-CCAM-4B (v1.0, huggingface.co/JaronTHU/Video-CCAM-4B) on your own video QA data.
# Its release is xtuner's layout (llm_adapter/, visual_encoder_adapter/, projector/ with its own code), made for
# microsoft/Phi-3-mini-4k-instruct + google/siglip-so400m-patch14-384: the released adapters train further on those
# base models (no new adapters), the released projector loads with its own code and trains (README "Fine-tune a
# released Video-CCAM model"; the LLM block, batch and memory are those of the phi3_mini_4k stage-2 recipe).
#   huggingface-cli download JaronTHU/Video-CCAM-4B --local-dir checkpoints/Video-CCAM-4B
#   xtuner train configs/released/videoccam_4b_finetune.py --deepspeed configs/deepspeed/zero2_bf16.json
#   python tools/convert_to_hf.py configs/released/videoccam_4b_finetune.py \
#       work_dirs/videoccam_4b_finetune OUT --save-format released
from mmengine.config import read_base

from videoccam.model.released import released_llm, released_projector, released_visual_encoder
from videoccam.model.videoccam_model import VideoCCAMModel

with read_base():
    from ..phi3_mini_4k.videoccam_phi3_mini_4k_stage2 import *  # noqa: F401,F403

#######################################################################
#                          PART 1  Settings                           #
#######################################################################
released_path = "checkpoints/Video-CCAM-4B"  # the downloaded release (a local folder)
llm_name_or_path = "microsoft/Phi-3-mini-4k-instruct"  # the base LLM the release adapts
visual_encoder_name_or_path = "google/siglip-so400m-patch14-384"
data_path = "data/my_videos/train.jsonl"  # your data (data/README.md); media paths relative to data_root
data_root = "data/my_videos"
num_queries = 1024  # LLM tokens per image or video: num_query in the released projector/config.json
lr = 5e-5  # a quarter of stage 2's: the adapters and the projector are trained already
max_epochs = 1

#######################################################################
#              PART 2-5  the values above, where they are read        #
#######################################################################
tokenizer.pretrained_model_name_or_path = llm_name_or_path  # noqa: F405
image_processor.pretrained_model_name_or_path = visual_encoder_name_or_path  # noqa: F405
model = dict(
    type=VideoCCAMModel,
    llm=dict(type=released_llm, released_path=released_path, llm_name_or_path=llm_name_or_path,
             torch_dtype=torch_dtype, attn_implementation=attn_implementation,  # noqa: F405
             trust_remote_code=trust_remote_code),  # noqa: F405
    visual_encoder=dict(type=released_visual_encoder, released_path=released_path,
                        visual_encoder_name_or_path=visual_encoder_name_or_path, torch_dtype=torch_dtype,  # noqa: F405
                        attn_implementation=attn_implementation),  # noqa: F405
    projector=dict(type=released_projector, released_path=released_path),  # in its saved dtype; trains in fp32
    llm_lora=None,  # the released adapters train further
    visual_encoder_lora=None,
    freeze_llm=True,
    freeze_visual_encoder=True,
    pretrained_pth=None,
    visual_select_layer=visual_select_layer,  # noqa: F405
    vision_chunk_size=vision_chunk_size,  # noqa: F405
    use_activation_checkpointing=use_activation_checkpointing,  # noqa: F405
)
train_dataloader.dataset.update(  # noqa: F405
    data_path=data_path, data_root=data_root, num_queries=num_queries, tokenizer=tokenizer,  # noqa: F405
    image_processor=image_processor,  # noqa: F405
)
optim_wrapper.optimizer.lr = lr  # noqa: F405
train_cfg.max_epochs = max_epochs  # noqa: F405
param_scheduler[0].end = warmup_ratio * max_epochs  # noqa: F405
param_scheduler[1].update(begin=warmup_ratio * max_epochs, end=max_epochs)  # noqa: F405
