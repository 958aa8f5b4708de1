# The temporal ablation's recipe (tools/ablate_temporal.py): the tiny stage 1 model with 64 queries (so it can
# also run on 64 frames), a fresh projector and LoRA on the LLM, trained on questions whose answer depends on
# frame order ("Which color appears first?", "Which way does the circle move?";
# videoccam.synthetic.shapes.generate_temporal). The vision tower stays frozen. The ablation trains it twice:
# as it is (CCAM mask) and with `model.projector.causal_mask=False`.
#   python tools/make_tiny_models.py
#   python tools/ablate_temporal.py            # generates the data, trains both, evaluates at 16 and 64 frames
from mmengine.config import read_base
from peft import LoraConfig

with read_base():
    from .videoccam_tiny_qwen2_stage1 import *  # noqa: F401,F403

#######################################################################
#                          PART 1  Settings                           #
#######################################################################
num_queries = 64  # >= the largest evaluated frame count (the CCAM mask gives every query one frame)
causal_mask = True  # False: plain cross-attention (the ablation)
data_root = "work_dirs/temporal_data"
data_path = data_root + "/train.json"
num_frames = 16
batch_size = 8
lr = 1e-3
max_epochs = 32  # 1000 videos / 8 = 125 iterations per epoch: 4,000 iterations
warmup_iters = 20
llm_lora_r, llm_lora_alpha = 16, 32
save_steps = 100000  # the last iteration only
log_interval = 50

#######################################################################
#              PART 2-5  the values above, where they are read        #
#######################################################################
model.projector.update(num_queries=num_queries, causal_mask=causal_mask)  # noqa: F405
model.llm_lora = dict(type=LoraConfig, r=llm_lora_r, lora_alpha=llm_lora_alpha, lora_dropout=0.0, bias="none",
                      task_type="CAUSAL_LM")  # fmt: skip  # noqa: F405
train_dataloader.update(batch_size=batch_size)  # noqa: F405
train_dataloader.dataset.update(data_path=data_path, data_root=data_root, num_queries=num_queries,  # noqa: F405
                                num_frames=num_frames)  # fmt: skip
optim_wrapper.optimizer.lr = lr  # noqa: F405
param_scheduler[0].end = warmup_iters  # noqa: F405
param_scheduler[1].end = max_epochs  # noqa: F405
train_cfg.max_epochs = max_epochs  # noqa: F405
default_hooks.logger.interval = log_interval  # noqa: F405
default_hooks.checkpoint.update(interval=save_steps)  # noqa: F405
