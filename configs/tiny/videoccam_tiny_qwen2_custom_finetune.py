# Fine-tune the embedded default (tiny Qwen2 + tiny SigLIP) on your own video QA data, starting from a stage-2
# checkpoint, with LoRA on the LLM and on SigLIP and the projector training (as stage 2). data/README.md walks
# through it on data/example:
#   python tools/make_example_data.py                      # media for data/example/train.jsonl
#   python tools/quickstart.py                             # or any stage-2 run: work_dirs/quickstart/stage2
#   python tools/validate_data.py data/example/train.jsonl --config configs/tiny/videoccam_tiny_qwen2_custom_finetune.py
#   python tools/train.py configs/tiny/videoccam_tiny_qwen2_custom_finetune.py --work-dir work_dirs/custom_finetune
# Your data: set data_root / data_path below (or --cfg-options train_dataloader.dataset.data_path=... and
# train_dataloader.dataset.data_root=...). To start from a converted Hugging Face folder instead of a training
# checkpoint, see configs/tiny/videoccam_tiny_qwen2_finetune_from_hf.py.
from mmengine.config import read_base

with read_base():
    from .videoccam_tiny_qwen2_stage2 import *  # noqa: F401,F403

#######################################################################
#                          PART 1  Settings                           #
#######################################################################
# Start from: a stage-2 work dir (its last_checkpoint), a .pth file or a DeepSpeed checkpoint folder
pretrained_pth = "work_dirs/quickstart/stage2"

# Data (data/README.md): paths in the records are relative to data_root
data_root = "data/example"
data_path = data_root + "/train.jsonl"
on_error = "raise"  # "raise": stop at the first bad record; "skip": drop it, list it in skipped_samples.json
num_frames = 16  # uniform sampling: frames per video (a record's "num_frames" overrides it)
sampling = "uniform"  # or "fps": target_fps frames per second, at most max_frames
target_fps = None
max_frames = None  # fps sampling cap (default num_queries)
folder_fps = 1.0  # frame rate of frame folders, for fps sampling
decode_threads = 0  # decoder threads per video (0 = decoder's default)
dataloader_num_workers = 0  # DataLoader worker processes (raise on real data: decoding is the bottleneck)

# Optimisation: a small dataset, a few epochs, a lower LR than stage 2
lr = 1e-3
max_epochs = 3
warmup_iters = 3  # iterations (the quickstart's stages: 20)
batch_size = 4
save_steps = 50

#######################################################################
#                    PART 2/3/4  overrides of stage 2                 #
#######################################################################
model.pretrained_pth = pretrained_pth  # noqa: F405
train_dataloader.dataset.update(  # noqa: F405
    data_path=data_path,
    data_root=data_root,
    on_error=on_error,
    num_frames=num_frames,
    sampling=sampling,
    target_fps=target_fps,
    max_frames=max_frames,
    folder_fps=folder_fps,
    decode_threads=decode_threads,
)
train_dataloader.update(batch_size=batch_size, num_workers=dataloader_num_workers)  # noqa: F405
optim_wrapper.optimizer.lr = lr  # noqa: F405
train_cfg.max_epochs = max_epochs  # noqa: F405
param_scheduler[0].end = warmup_iters  # noqa: F405
param_scheduler[1].end = max_epochs  # noqa: F405
default_hooks.checkpoint.interval = save_steps  # noqa: F405
