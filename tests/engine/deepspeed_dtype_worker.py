"""Worker for tests of the GPU DeepSpeed JSONs: what the installed DeepSpeed does with them, in one process (gloo).

``python deepspeed_dtype_worker.py JSON TINY_MODELS PORT`` prints one JSON line:

* ``accumulated``: a bias-free ``Linear(1, 1)`` with weight 1 and SGD (lr 1) over 4 micro-batches with inputs
  1, 3e-3, 3e-3, 3e-3 (gradients 0.25 and three 7.5e-4 after DeepSpeed's division by 4): summed in fp32 the
  master weight becomes 0.74805 (1 - 0.25225 rounded to bf16 once, by the bf16 communication) or 0.74775 (no
  rounding); summed in bf16 every 7.5e-4 is lost against 0.25 and it becomes exactly 0.75;
* ``trainable`` / ``frozen``: the dtypes of the tiny stage-2 model's weights (LLM and SigLIP loaded in bf16)
  after ``deepspeed.initialize`` (under ZeRO-3: of their partitions), built as xtuner's DeepSpeedStrategy builds
  it (the config registered with transformers first: ZeRO-3 loads the towers inside ``zero.Init``);
* ``outputs``: the dtypes of the projector's and of the LoRA layers' outputs in a training forward;
* ``master``: the dtype of the optimizer's master weights; ``loss``: one step's loss (finite).

CPU settings are applied to the JSON (``overlap_comm`` off: no CUDA streams); everything else is the file's.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main() -> int:
    config_path, tiny_models, port = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    sys.path.insert(0, str(ROOT))
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port, RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
    from videoccam import xtuner_compat

    xtuner_compat.install()
    import deepspeed
    import torch
    from mmengine.config import Config
    from transformers.integrations.deepspeed import HfDeepSpeedConfig
    from xtuner.registry import BUILDER

    from videoccam.model.hf.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX

    deepspeed.init_distributed("gloo")
    base = json.loads(config_path.read_text())
    base["zero_optimization"]["overlap_comm"] = False
    report = {}

    # fp32 or bf16 gradient accumulation
    ds = dict(base, train_micro_batch_size_per_gpu=1, gradient_accumulation_steps=4, gradient_clipping=0.0)
    toy = torch.nn.Linear(1, 1, bias=False)
    toy.weight.data.fill_(1.0)
    engine, *_ = deepspeed.initialize(model=toy, optimizer=torch.optim.SGD(toy.parameters(), lr=1.0), config=ds)
    for x in (1.0, 3e-3, 3e-3, 3e-3):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = engine(torch.tensor([[x]], dtype=next(engine.module.parameters()).dtype))
        engine.backward(out.float().sum())
        engine.step()
    with deepspeed.zero.GatheredParameters(list(engine.module.parameters())):
        report["accumulated"] = float(engine.module.weight.detach().float())
    optimizer = engine.optimizer
    masters = getattr(optimizer, "single_partition_of_fp32_groups", None) or optimizer.fp32_partitioned_groups_flat
    report["accumulated_master"] = float(masters[0].float()[0])
    engine.destroy()

    # the tiny stage-2 model, built as xtuner's DeepSpeedStrategy builds it
    ds = dict(base, train_micro_batch_size_per_gpu=1, gradient_accumulation_steps=1, gradient_clipping=1.0)
    keep = HfDeepSpeedConfig(ds)  # noqa: F841 - must stay alive while the model is built
    cfg = Config.fromfile(str(ROOT / "configs/tiny/videoccam_tiny_qwen2_stage2.py"))
    cfg.merge_from_dict({"model.llm.pretrained_model_name_or_path": str(tiny_models / "qwen2"),
                         "model.visual_encoder.pretrained_model_name_or_path": str(tiny_models / "siglip"),
                         "model.llm.torch_dtype": torch.bfloat16, "model.visual_encoder.torch_dtype": torch.bfloat16,
                         "model.pretrained_pth": None})  # fmt: skip
    torch.manual_seed(0)
    model = BUILDER.build(cfg.model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    engine, optimizer, *_ = deepspeed.initialize(
        model=model, optimizer=torch.optim.AdamW(trainable, lr=1e-3), config=ds
    )

    def dtype_of(p):
        return str(getattr(p, "ds_tensor", p).dtype)

    report["trainable"] = sorted({dtype_of(p) for p in model.parameters() if p.requires_grad})
    report["frozen"] = sorted({dtype_of(p) for p in model.parameters() if not p.requires_grad})
    outputs = {}

    def record(name):
        return lambda module, args, out: outputs.setdefault(name, set()).add(str(out.dtype))

    model.projector.register_forward_hook(record("projector"))
    for name, module in model.named_modules():
        if name.endswith("lora_A.default"):
            module.register_forward_hook(record("llm_lora" if name.startswith("llm.") else "vision_lora"))
    ids = torch.tensor([[1, 2, IMAGE_TOKEN_INDEX, 3, 4, 5]])
    labels = torch.tensor([[IGNORE_INDEX] * 4 + [4, 5]])
    data = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels,
            "pixel_values": torch.randn(2, 3, 64, 64), "num_frames": [2]}  # fmt: skip
    loss = engine(data, mode="loss")["loss"]
    engine.backward(loss)
    engine.step()
    report["outputs"] = {k: sorted(v) for k, v in outputs.items()}
    masters = getattr(optimizer, "single_partition_of_fp32_groups", None) or optimizer.fp32_partitioned_groups_flat
    report["master"] = sorted({str(m.dtype) for m in masters})
    report["loss"] = float(loss)
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
