"""VideoCCAMModel on tiny random models: trainable sets, vision tokens, mixed batches, splicing, state dicts."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig
from transformers import AutoModelForCausalLM, SiglipVisionModel

from tests.conftest import ROOT, write_malicious_checkpoint
from videoccam.model.hf.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX
from videoccam.model.hf.modeling_videoccam import encode_frames, splice_media_embeds
from videoccam.model.videoccam_model import VideoCCAMModel

PROJECTOR = dict(num_queries=16, hidden_size=32, num_heads=4, intermediate_size=64, dropout=0.0,
                 attention_dropout=0.0)


def build(tiny_models, stage: int, attn: str = "sdpa", **kwargs) -> VideoCCAMModel:
    torch.manual_seed(0)
    lora = {}
    if stage == 2:
        lora = dict(
            llm_lora=LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, task_type="CAUSAL_LM"),
            visual_encoder_lora=LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0),
        )
    return VideoCCAMModel(
        llm=AutoModelForCausalLM.from_pretrained(tiny_models / "qwen2", attn_implementation=attn),
        visual_encoder=SiglipVisionModel.from_pretrained(tiny_models / "siglip"),
        projector=dict(PROJECTOR),
        use_activation_checkpointing=kwargs.pop("use_activation_checkpointing", False),
        **lora,
        **kwargs,
    )


def batch(frames_per_media: list[int | None], text_len: int = 6, size: int = 64) -> dict:
    """One sample per entry: an int = a media item with that many frames, None = text-only."""
    torch.manual_seed(1)
    rows, labels = [], []
    for i, frames in enumerate(frames_per_media):
        ids = torch.randint(5, 50, (text_len + i,)).tolist()
        if frames is not None:
            ids = ids[:2] + [IMAGE_TOKEN_INDEX] + ids[2:]
        rows.append(ids)
        labels.append([IGNORE_INDEX] * (len(ids) - 3) + ids[-3:])
    length = max(map(len, rows))
    input_ids = torch.zeros(len(rows), length, dtype=torch.long)
    lab = torch.full((len(rows), length), IGNORE_INDEX)
    mask = torch.zeros(len(rows), length, dtype=torch.long)
    for r, (ids, lb) in enumerate(zip(rows, labels)):
        input_ids[r, : len(ids)] = torch.tensor(ids)
        lab[r, : len(ids)] = torch.tensor(lb)
        mask[r, : len(ids)] = 1
    counts = [f for f in frames_per_media if f is not None]
    pixel_values = torch.randn(sum(counts), 3, size, size) if counts else None
    return dict(input_ids=input_ids, labels=lab, attention_mask=mask, pixel_values=pixel_values, num_frames=counts)


def test_stage1_trains_exactly_the_projector(tiny_models):
    model = build(tiny_models, stage=1)
    names = model.trainable_parameter_names()
    assert names and all(n.startswith("projector.") for n in names)
    assert len(names) == len(list(model.projector.parameters()))
    assert set(model.state_dict()) == set(names)


def test_stage2_trains_projector_and_lora_only(tiny_models):
    model = build(tiny_models, stage=2)
    names = model.trainable_parameter_names()
    projector = [n for n in names if n.startswith("projector.")]
    lora = [n for n in names if not n.startswith("projector.")]
    assert len(projector) == len(list(model.projector.parameters()))
    assert lora and all("lora_" in n for n in lora)
    assert any(n.startswith("llm.") for n in lora) and any(n.startswith("visual_encoder.") for n in lora)
    # every linear layer of the LLM got an adapter, the output head did not
    assert not any("lm_head" in n for n in lora)
    assert set(model.state_dict()) == set(names)


def test_vision_features_keep_every_siglip_token(tiny_models):
    model = build(tiny_models, stage=1)
    pixel_values = torch.randn(3, 3, 64, 64)
    features = encode_frames(model.visual_encoder, pixel_values, -2, chunk_size=2)
    full = model.visual_encoder(pixel_values, output_hidden_states=True).hidden_states[-2]
    assert features.shape == (3, 16, 32)  # (64 / 16)^2 = 16 patches, none dropped
    torch.testing.assert_close(features, full)


def test_mixed_batch_of_1_5_16_frames_and_text(tiny_models):
    model = build(tiny_models, stage=2)
    model.train()
    data = batch([1, 5, None, 16])
    loss = model(data, mode="loss")["loss"]
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for n, p in model.named_parameters() if p.requires_grad]
    assert all(g is not None for g in grads)
    # one media item of a batch does not change another sample's logits: sample 0 alone == in the batch
    model.eval()
    with torch.no_grad():
        together = model(data, mode="tensor")
        n_tokens = int(data["attention_mask"][0].sum())
        first = dict(
            input_ids=data["input_ids"][:1, :n_tokens],
            attention_mask=data["attention_mask"][:1, :n_tokens],
            pixel_values=data["pixel_values"][:1],
            num_frames=[1],
        )
        alone = model(first, mode="tensor")
    n = int(alone.shape[1])
    torch.testing.assert_close(together[0, :n], alone[0], atol=1e-5, rtol=1e-4)


def test_text_only_batch_keeps_towers_in_the_graph(tiny_models):
    model = build(tiny_models, stage=2)
    model.train()
    loss = model(batch([None, None]), mode="loss")["loss"]
    loss.backward()
    for name, p in model.named_parameters():
        if p.requires_grad and name.startswith(("projector.", "visual_encoder.")):
            assert p.grad is not None, name  # zero-valued, but present: DDP/ZeRO-3 ranks stay in step


def test_empty_batch_after_skips_gives_zero_loss(tiny_models):
    model = build(tiny_models, stage=1)
    model.train()
    loss = model({"skipped": [{"index": 0}]}, mode="loss")["loss"]
    assert float(loss.detach()) == 0.0
    loss.backward()


def test_activation_checkpointing_gives_same_grads(tiny_models):
    grads = []
    for ckpt in (False, True):
        model = build(tiny_models, stage=2, use_activation_checkpointing=ckpt)
        model.train()
        model(batch([4, None]), mode="loss")["loss"].backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad})
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], atol=1e-5, rtol=1e-4)


def test_state_dict_round_trip_and_pretrained_pth(tiny_models, tmp_path):
    model = build(tiny_models, stage=1)
    with torch.no_grad():
        for p in model.projector.parameters():
            p.add_(0.5)
    path = tmp_path / "stage1.pth"
    torch.save({"state_dict": model.state_dict()}, path)
    stage2 = build(tiny_models, stage=2, pretrained_pth=str(path))
    for name, value in model.state_dict().items():
        torch.testing.assert_close(stage2.state_dict()[name], value)


def test_pretrained_pth_with_foreign_keys_is_an_error(tiny_models, tmp_path):
    path = tmp_path / "bad.pth"
    torch.save({"state_dict": {"projector.no_such_weight": torch.zeros(1)}}, path)
    with pytest.raises(ValueError, match="no place in this model"):
        build(tiny_models, stage=1, pretrained_pth=str(path))


def test_pretrained_pth_that_would_run_code_is_refused(tiny_models, tmp_path):
    from videoccam.checkpoint import UnsafeCheckpointError

    marker = tmp_path / "payload_ran"
    path = write_malicious_checkpoint(tmp_path / "stage1.pth", marker)
    with pytest.raises(UnsafeCheckpointError, match=f"refusing to load checkpoint '{path}': .* posix.system"):
        build(tiny_models, stage=1, pretrained_pth=str(path))
    assert not marker.exists()


def test_splice_places_media_and_masks_labels():
    embed = torch.nn.Embedding(10, 2)
    input_ids = torch.tensor([[1, IMAGE_TOKEN_INDEX, 2, 0], [3, 4, 5, 6]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    labels = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 2, IGNORE_INDEX], [IGNORE_INDEX, 4, 5, 6]])
    media = torch.full((1, 3, 2), 7.0)
    for side in ("right", "left"):
        out = splice_media_embeds(embed, input_ids, media, mask, labels, padding_side=side)
        assert out["inputs_embeds"].shape == (2, 5, 2)
        row0 = out["inputs_embeds"][0]
        start = 0 if side == "right" else 0  # sample 0 is the longest (2 text + 3 media = 5)
        torch.testing.assert_close(row0[start + 1 : start + 4], media[0])
        assert out["labels"][0].tolist() == [IGNORE_INDEX] * 4 + [2]
        if side == "right":
            assert out["attention_mask"][1].tolist() == [1, 1, 1, 1, 0]
            assert out["position_ids"][1].tolist()[:4] == [0, 1, 2, 3]
        else:
            assert out["attention_mask"][1].tolist() == [0, 1, 1, 1, 1]
            assert out["position_ids"][1].tolist()[1:] == [0, 1, 2, 3]


def test_splice_rejects_placeholder_media_mismatch():
    embed = torch.nn.Embedding(10, 2)
    input_ids = torch.tensor([[1, IMAGE_TOKEN_INDEX, IMAGE_TOKEN_INDEX]])
    with pytest.raises(ValueError, match="2 media placeholders .* but 1 media items"):
        splice_media_embeds(embed, input_ids, torch.zeros(1, 3, 2))


def test_eager_and_sdpa_attention_agree(tiny_models):
    data = batch([3, None])
    logits = []
    for attn in ("sdpa", "eager"):
        model = build(tiny_models, stage=1, attn=attn).eval()
        assert model.llm.config._attn_implementation == attn
        with torch.no_grad():
            logits.append(model(data, mode="tensor"))
    mask = torch.tensor([[1] * logits[0].shape[1], [1] * 7 + [0] * (logits[0].shape[1] - 7)]).bool()
    torch.testing.assert_close(logits[0][mask], logits[1][mask], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("stage", [1, 2])
def test_answer_only_loss_equals_the_llms_full_loss(tiny_models, stage):
    """The training loss builds logits for labelled positions only; its value is the LLM's own loss."""
    model = build(tiny_models, stage=stage).eval()
    data = batch([2, None, 5])
    with torch.no_grad():
        loss = model(data, mode="loss")["loss"]
        spliced, _ = model._llm_inputs(data, with_labels=True)
        full = model.llm(inputs_embeds=spliced["inputs_embeds"], attention_mask=spliced["attention_mask"],
                         position_ids=spliced["position_ids"], labels=spliced["labels"]).loss
    torch.testing.assert_close(loss, full, atol=1e-5, rtol=1e-5)


def test_uint8_frames_are_normalised_in_the_model_to_the_same_loss(tiny_models):
    """Frames as the dataset gives them (resized uint8 + pixel_affine) train exactly like normalised floats."""
    model = build(tiny_models, stage=2).train()
    data = batch([2, None, 5])
    torch.manual_seed(3)
    frames = torch.randint(0, 256, data["pixel_values"].shape, dtype=torch.uint8)
    affine = torch.tensor([[1 / 127.5] * 3, [-1.0] * 3])  # SigLIP: (x / 255 - 0.5) / 0.5
    floats = model(dict(data, pixel_values=frames.float() * affine[0, 0] + affine[1, 0]), mode="loss")["loss"]
    uint8 = model(dict(data, pixel_values=frames, pixel_affine=affine), mode="loss")["loss"]
    torch.testing.assert_close(uint8, floats, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="no pixel_affine"):
        model(dict(data, pixel_values=frames), mode="loss")


@pytest.mark.parametrize("setup", ["stage2", "full_llm"])
def test_chunked_loss_equals_the_plain_loss_and_gradients(tiny_models, setup):
    """loss_chunk_size (the default) vs None: the same loss, loss_divisor too, and the same gradient everywhere."""
    kwargs = dict(stage=2) if setup == "stage2" else dict(stage=1, freeze_llm=False)  # full_llm: the head trains
    chunked = build(tiny_models, loss_chunk_size=2, **kwargs)
    plain = build(tiny_models, loss_chunk_size=None, **kwargs)
    plain.load_state_dict(chunked.state_dict(), strict=False)
    data = batch([2, None, 5])
    results = []
    for model in (chunked, plain):
        model.train()
        losses = [model(data, mode="loss")["loss"], model(dict(data, loss_divisor=7.0), mode="loss")["loss"]]
        (losses[0] + losses[1]).backward()
        grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
        results.append((losses, grads))
    (chunked_losses, chunked_grads), (plain_losses, plain_grads) = results
    for a, b in zip(chunked_losses, plain_losses):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert chunked_grads.keys() == plain_grads.keys()
    if setup == "full_llm":
        assert "llm.lm_head.weight" in chunked_grads
    for name, grad in chunked_grads.items():
        torch.testing.assert_close(grad, plain_grads[name], rtol=1e-5, atol=1e-5, msg=name)


# ----------------------------------------------------------------------------------------------------------------
# bf16 towers: the trainable weights are fp32 masters (issue 9)
# ----------------------------------------------------------------------------------------------------------------
def build_bf16(tiny_models, setup: str) -> VideoCCAMModel:
    """bf16 LLM + bf16 SigLIP as the real recipes load them. ``lora``: stage 2 (projector + LoRA on both towers);
    ``full``: the projector and the whole LLM train (no LoRA)."""
    torch.manual_seed(0)
    kwargs = {}
    if setup == "lora":
        kwargs = dict(
            llm_lora=LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, task_type="CAUSAL_LM"),
            visual_encoder_lora=LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0),
        )
    else:
        kwargs = dict(freeze_llm=False)
    return VideoCCAMModel(
        llm=AutoModelForCausalLM.from_pretrained(tiny_models / "qwen2", torch_dtype=torch.bfloat16),
        visual_encoder=SiglipVisionModel.from_pretrained(tiny_models / "siglip", torch_dtype=torch.bfloat16),
        projector=dict(PROJECTOR),
        use_activation_checkpointing=False,
        **kwargs,
    )


@pytest.mark.parametrize("autocast", [True, False], ids=["autocast", "no_autocast"])
@pytest.mark.parametrize("setup", ["lora", "full"])
def test_bf16_run_updates_every_trainable_tensor(tiny_models, setup, autocast):
    """5 AdamW steps at lr 2e-5 on bf16 towers change every trainable tensor (projector LayerNorms included).

    Covers the model and mmengine's ``OptimWrapper`` (backward, step, zero_grad), with the forward under
    mmengine's ``autocast(dtype=bfloat16)`` as ``AmpOptimWrapper.optim_context`` runs it, or without autocast.
    ``AmpOptimWrapper`` itself refuses to start without CUDA; what it adds (a GradScaler multiplying the loss and
    dividing the gradients by the same power of two) does not change which updates survive. Before the fix the
    projector was bf16: an update below half a bf16 step was rounded away, so the LayerNorm weights (1.0) never
    moved and most query elements neither.
    """
    from mmengine.optim import OptimWrapper
    from mmengine.runner.amp import autocast as mm_autocast

    model = build_bf16(tiny_models, setup)
    model.train()
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    before = {n: p.detach().clone() for n, p in trainable.items()}
    wrapper = OptimWrapper(torch.optim.AdamW(trainable.values(), lr=2e-5, weight_decay=0.0))
    data = batch([1, 4, None, 2])
    for _ in range(5):
        with mm_autocast(device_type="cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = model(data, mode="loss")["loss"]
        assert torch.isfinite(loss)
        wrapper.update_params(loss)
    unchanged = [n for n, p in trainable.items() if torch.equal(p.detach(), before[n])]
    assert not unchanged, f"{len(unchanged)} of {len(trainable)} trainable tensors never changed: {unchanged[:5]}"
    if setup == "lora":  # every element gets a gradient (no embedding rows of unseen tokens), so every one moves
        moved = sum(int((p.detach() != before[n]).sum()) for n, p in trainable.items())
        assert moved == sum(p.numel() for p in trainable.values())
    # how: the trainable weights are fp32, the frozen ones stay as loaded
    assert {p.dtype for p in trainable.values()} == {torch.float32}
    assert {p.dtype for p in model.parameters() if not p.requires_grad} == {torch.bfloat16}


def test_bf16_storage_dtypes_are_recorded_and_exported(tiny_models):
    """The fp32 trainable weights remember their loaded dtype: the exported model is bf16 again unless asked."""
    from videoccam.export.hf_model import loaded_dtype_state

    model = build_bf16(tiny_models, "full")
    projector = {f"projector.{n}" for n, _ in model.projector.named_parameters()}
    llm = {f"llm.{n}" for n, _ in model.llm.named_parameters(remove_duplicate=False)}
    assert set(model.weight_dtypes) == projector | llm
    assert set(model.weight_dtypes.values()) == {torch.bfloat16}
    state = loaded_dtype_state(model, "projector", model.projector.state_dict())
    assert {v.dtype for v in state.values()} == {torch.bfloat16}
    torch.testing.assert_close(state["queries"], model.projector.queries.detach().to(torch.bfloat16))
    # fp32 towers: nothing to upcast, nothing recorded (the projector computes in the towers' fp32)
    assert build(tiny_models, stage=2).weight_dtypes == {}


def test_single_process_forward_where_xtuner_would_dispatch_flash_attention(tiny_models, monkeypatch):
    """On a CUDA machine with flash-attn, xtuner's dispatch swaps the Qwen2 / Llama / Mistral attention forwards for
    ones that call ``dist.get_rank()``; simulated here by forcing xtuner's ``SUPPORT_FLASH2``. A model built and run
    in one process (no process group: ``tools/train.py`` without a launcher, the quickstart on one GPU) must work,
    with transformers' own attention."""
    import torch.distributed as dist
    from transformers.models.qwen2.modeling_qwen2 import Qwen2Attention
    from xtuner.model.modules import dispatch

    monkeypatch.setattr(dispatch, "SUPPORT_FLASH2", True)
    assert not (dist.is_available() and dist.is_initialized())
    model = build(tiny_models, stage=2)
    loss = model(batch([2, None]), mode="loss")["loss"]  # xtuner's forwards: "process group has not been initialized"
    assert torch.isfinite(loss)
    loss.backward()
    attention = [m for m in model.llm.modules() if isinstance(m, Qwen2Attention)]
    assert attention and all(m.forward.__func__ is Qwen2Attention.forward for m in attention)


DEEPSPEED_JSONS = {name: ROOT / f"configs/deepspeed/{name}.json" for name in ("zero2_bf16", "zero3_bf16")}


@pytest.mark.parametrize("case", ["bf16", "autocast", "none"])
def test_trainable_weights_take_the_dtype_deepspeed_computes_in(tiny_models, case):
    """With a DeepSpeed config registered (as xtuner's DeepSpeedStrategy does before building the model) that
    enables bf16, trainable weights are bf16 (DeepSpeed keeps the fp32 masters; ZeRO-3 would not cast them); with
    the autocast JSON or without DeepSpeed they stay fp32."""
    import json

    pytest.importorskip("deepspeed")
    from transformers.integrations.deepspeed import HfDeepSpeedConfig

    keep = None
    if case != "none":
        config = json.loads(DEEPSPEED_JSONS["zero2_bf16"].read_text())
        if case == "bf16":  # xtuner's deepspeed_zero2 after its "auto" dtype: bf16
            config.update(bf16={"enabled": True}, torch_autocast={"enabled": False})
        config.update(train_micro_batch_size_per_gpu=1, gradient_accumulation_steps=1, gradient_clipping=1.0)
        keep = HfDeepSpeedConfig(config)  # noqa: F841 - registered while it lives
    model = build(tiny_models, stage=2)
    dtypes = {p.dtype for p in model.parameters() if p.requires_grad}
    assert dtypes == ({torch.bfloat16} if case == "bf16" else {torch.float32})
    del keep


@pytest.mark.slow
def test_zero3_bf16_trainable_weights_compute_in_bf16_with_fp32_masters(tiny_models):
    """DeepSpeed ZeRO-3 (the installed release, one process on gloo) with configs/deepspeed/zero3_bf16.json: the
    LLM and SigLIP load inside zero.Init in bf16, and DeepSpeed does not cast the model; the projector and the
    LoRA adapters must still compute in bf16, with fp32 master weights, and the gradients of the micro-batches
    must add up in fp32 (tests/engine/deepspeed_dtype_worker.py)."""
    import importlib.util
    import json
    import socket
    import subprocess
    import sys

    if importlib.util.find_spec("deepspeed") is None:
        pytest.skip("DeepSpeed is not installed (bash tools/install.sh deepspeed)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = subprocess.run([sys.executable, str(ROOT / "tests/engine/deepspeed_dtype_worker.py"),
                          str(DEEPSPEED_JSONS["zero3_bf16"]), str(tiny_models), str(port)],
                         capture_output=True, text=True, timeout=600, cwd=ROOT)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["trainable"] == report["frozen"] == ["torch.bfloat16"]
    assert report["outputs"] == {"projector": ["torch.bfloat16"], "llm_lora": ["torch.bfloat16"],
                                 "vision_lora": ["torch.bfloat16"]}  # fmt: skip
    assert report["master"] == ["torch.float32"]
    assert report["accumulated_master"] == pytest.approx(0.7477455, abs=1e-6)  # fp32 sum (bf16 sum: 0.75)
