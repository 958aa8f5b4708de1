# Fine-tuning that starts from a converted single-folder Video-CCAM model (tools/convert_to_hf.py output, or a
# released v1.2-style folder) instead of separate LLM / SigLIP checkpoints + a stage-1 .pth:
#   the LLM, SigLIP and the projector all load their weights from `videoccam_hf_path` (the adapters of the run
#   that produced it are already merged), and new LoRA adapters are trained on top, as in stage 2.
# Everything else (data, schedule, LoRA sizes) comes from the stage-2 config. Build the folder first:
#   python tools/quickstart.py   (writes work_dirs/quickstart/hf)   or   python tools/convert_to_hf.py ...
# then `python tools/train.py configs/tiny/videoccam_tiny_qwen2_finetune_from_hf.py`.
# For a real model, point videoccam_hf_path at e.g. a Video-CCAM-7B-v1.2 folder, set the LLM/vision dtype to
# bfloat16 and use the real recipe's batch sizes. Settings inherited from stage 1 must agree with the
# folder's config.json: num_queries (the dataset's visual token count) = projector_config.num_queries, and
# visual_select_layer = its visual_select_layer (vision_chunk_size is free).
import torch
from mmengine.config import read_base
from transformers import AutoTokenizer, SiglipImageProcessor

from videoccam.model.from_hf import llm_from_videoccam, projector_from_videoccam, visual_encoder_from_videoccam

with read_base():
    from .videoccam_tiny_qwen2_stage2 import *  # noqa: F401,F403

#######################################################################
#                          PART 1  Settings                           #
#######################################################################
videoccam_hf_path = "work_dirs/quickstart/hf"
pretrained_pth = None  # every weight comes from the folder
llm_dtype = torch.float32  # torch.bfloat16 on GPUs

#######################################################################
#            PART 2  Model & Tokenizer & Image Processor              #
#######################################################################
# the folder's tokenizer carries the <image>/<video> tokens (never embedded) and the chat template
tokenizer = dict(
    type=AutoTokenizer.from_pretrained,
    pretrained_model_name_or_path=videoccam_hf_path,
    trust_remote_code=True,
    padding_side="right",
)
image_processor = dict(type=SiglipImageProcessor.from_pretrained, pretrained_model_name_or_path=videoccam_hf_path)

model.pretrained_pth = pretrained_pth  # noqa: F405
model.llm = dict(  # noqa: F405
    type=llm_from_videoccam, path=videoccam_hf_path, torch_dtype=llm_dtype, attn_implementation="sdpa"
)
model.visual_encoder = dict(  # noqa: F405
    type=visual_encoder_from_videoccam, path=videoccam_hf_path, torch_dtype=llm_dtype
)
# config overrides for fine-tuning go here, e.g. dropout=0.0 (fields that shape weights cannot change)
model.projector = dict(type=projector_from_videoccam, path=videoccam_hf_path)  # noqa: F405

#######################################################################
#                      PART 3  Dataset & Dataloader                   #
#######################################################################
train_dataloader.dataset.tokenizer = tokenizer  # noqa: F405
train_dataloader.dataset.image_processor = image_processor  # noqa: F405
