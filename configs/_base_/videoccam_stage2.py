# The stage-2 additions (visual instruction tuning) to a stage-1 config: LoRA on the LLM and on SigLIP, the
# projector keeps training (design.md section 3), SFT data, lr and global batch. Starts from the stage-1
# checkpoint given by `pretrained_pth` (a .pth file, a DeepSpeed checkpoint folder, or a stage-1 work dir, whose
# `last_checkpoint` is used).
#
# Not a config on its own: a stage-2 config reads its LLM's stage-1 config and then this file with `read_base()`,
# sets its batch and stage-1 work dir, and copies part 1 to the keys that read it (configs/README.md, "Layout").
#
# Hyper-parameters: xtuner's LLaVA LoRA fine-tune defaults: lr 2e-4, global batch 128; LLM LoRA r 512,
# alpha 256, dropout 0.05 on every linear layer but lm_head; SigLIP LoRA r 64, alpha 16, dropout 0.05 on the
# encoder layers whose output reaches the projector.
from peft import LoraConfig

#######################################################################
#                          PART 1  Settings                           #
#######################################################################
pretrained_pth = None  # each stage-2 config points this at its stage-1 work dir

# Data in the format of data/README.md (text-only samples and several media per record allowed). One data file
# (or a glob of .jsonl shards) with its media root:
data_path = "data/videoccam_sft/videoccam_sft.json"
data_root = "data/videoccam_sft"
# ... or a mixture of sources, which then replaces data_path / data_root: each source has its data files (a path,
# a glob or a list), media root, on_error and an amount: repeat (0.5 = a fixed half, 2 = every record twice) or
# num_samples. The amounts are drawn with mixture_seed, the same on every rank and run (data/README.md, "Mixtures").
data_sources = None
# data_sources = [
#     dict(data_path="data/llava_v1_5_mix665k/llava_v1_5_mix665k.json", data_root="data/llava_images"),
#     dict(data_path="data/videochat2_it/*.jsonl", data_root="data/videochat2_videos", num_samples=500_000),
#     dict(data_path="data/video_captions/part-*.jsonl", data_root="data/videos", repeat=0.5, on_error="skip"),
# ]
mixture_seed = 0

global_batch_size = 128
lr = 2e-4

llm_lora_r = 512
llm_lora_alpha = 256
llm_lora_dropout = 0.05
visual_encoder_lora_r = 64
visual_encoder_lora_alpha = 16
visual_encoder_lora_dropout = 0.05

#######################################################################
#            PART 2  the adapters stage 2 adds to the model           #
#######################################################################
llm_lora = dict(
    type=LoraConfig,
    r=llm_lora_r,
    lora_alpha=llm_lora_alpha,
    lora_dropout=llm_lora_dropout,
    bias="none",
    task_type="CAUSAL_LM",
)
visual_encoder_lora = dict(
    type=LoraConfig,
    r=visual_encoder_lora_r,
    lora_alpha=visual_encoder_lora_alpha,
    lora_dropout=visual_encoder_lora_dropout,
    bias="none",
)
