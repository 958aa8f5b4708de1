"""Tests for videoccam/model/hf/ccam_projector.py (CPU, tiny configs, no network)."""

import ast
import json
import math
import subprocess
import sys
import textwrap
from fractions import Fraction

import pytest
import torch

from tests.conftest import isolated_env, isolated_python_path
from videoccam.model.hf.ccam_projector import (
    CCAMProjector,
    CCAMProjectorConfig,
    build_ccam_mask,
    build_query_self_mask,
    query_frame_index,
)

N_Q, HIDDEN, HEADS, CROSS, INTER, OUT, P = 8, 16, 2, 12, 32, 20, 3


def tiny_config(**overrides) -> CCAMProjectorConfig:
    kwargs = dict(
        num_queries=N_Q,
        hidden_size=HIDDEN,
        num_heads=HEADS,
        cross_hidden_size=CROSS,
        intermediate_size=INTER,
        output_size=OUT,
        depth=2,
    )
    kwargs.update(overrides)
    return CCAMProjectorConfig(**kwargs)


def tiny_model(seed: int = 0, **overrides) -> CCAMProjector:
    torch.manual_seed(seed)
    model = CCAMProjector(tiny_config(**overrides))
    # Non-trivial LayerNorm affine parameters so the reference test exercises them.
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name:
                param.add_(0.1 * torch.randn_like(param))
    return model


def features(num_frames, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(sum(num_frames), P, CROSS, generator=g)


# ----------------------------------------------------------------------------------------------------------------
# Masks against truth tables written by hand
# ----------------------------------------------------------------------------------------------------------------
def _rows(table: str) -> torch.Tensor:
    """'1100 / 1110' style table -> BoolTensor."""
    rows = [r.strip() for r in table.strip().splitlines()]
    return torch.tensor([[c == "1" for c in r] for r in rows], dtype=torch.bool)


# design.md 2.1 worked example: N = 8, T = 4 (P = 1). Queries 0,1: frame 0; 2,3: 0-1; 4,5: 0-2; 6,7: 0-3.
TABLE_8x4 = """
1000
1000
1100
1100
1110
1110
1111
1111
"""
# N = 8, T = 3, floor: tau(i) = (3i)//8 = 0,0,0,1,1,1,2,2.
TABLE_8x3_FLOOR = """
100
100
100
110
110
110
111
111
"""
# N = 8, T = 3, ceil: query i sees ceil(3(i+1)/8) = 1,1,2,2,2,3,3,3 frames.
TABLE_8x3_CEIL = """
100
100
110
110
110
111
111
111
"""


@pytest.mark.parametrize(
    "num_frames, mode, table",
    [(4, "floor", TABLE_8x4), (4, "ceil", TABLE_8x4), (3, "floor", TABLE_8x3_FLOOR), (3, "ceil", TABLE_8x3_CEIL)],
)
def test_mask_truth_tables(num_frames, mode, table):
    truth = _rows(table)
    mask = build_ccam_mask(8, num_frames, 1, mode=mode)
    assert mask.dtype == torch.bool and mask.shape == (8, num_frames)
    assert torch.equal(mask, truth)
    # P = 2: every frame column becomes two adjacent key columns (frame-major keys).
    mask2 = build_ccam_mask(8, num_frames, 2, mode=mode)
    assert mask2.shape == (8, 2 * num_frames)
    assert torch.equal(mask2, truth.repeat_interleave(2, dim=1))
    # tau = last visible frame = number of True frame columns - 1.
    assert torch.equal(query_frame_index(8, num_frames, mode), truth.sum(1) - 1)


def test_floor_and_ceil_differ_only_where_expected():
    assert torch.equal(query_frame_index(8, 3, "floor"), torch.tensor([0, 0, 0, 1, 1, 1, 2, 2]))
    assert torch.equal(query_frame_index(8, 3, "ceil"), torch.tensor([0, 0, 1, 1, 1, 2, 2, 2]))
    # Identical whenever T divides N (the training setting).
    for t in (1, 2, 4, 8):
        assert torch.equal(build_ccam_mask(8, t, 3, "floor"), build_ccam_mask(8, t, 3, "ceil"))


@pytest.mark.parametrize("mode", ["floor", "ceil"])
def test_single_frame_is_plain_cross_attention(mode):
    assert build_ccam_mask(8, 1, 5, mode).all()
    assert build_query_self_mask(8, 1, mode).all()


def test_query_self_mask_truth_table():
    # N = 8, T = 4: groups {0,1} {2,3} {4,5} {6,7}; query i attends j iff group(j) <= group(i).
    truth = _rows(
        """
        11000000
        11000000
        11110000
        11110000
        11111100
        11111100
        11111111
        11111111
        """
    )
    assert torch.equal(build_query_self_mask(8, 4), truth)


def test_mask_device_argument():
    assert build_ccam_mask(4, 2, 2, device="cpu").device.type == "cpu"


# ----------------------------------------------------------------------------------------------------------------
# Errors name the offending value
# ----------------------------------------------------------------------------------------------------------------
def test_mask_errors():
    with pytest.raises(ValueError, match=r"num_frames=9 exceeds num_queries=8"):
        build_ccam_mask(8, 9, 1)
    with pytest.raises(ValueError, match=r"num_frames must be >= 1, got 0"):
        build_ccam_mask(8, 0, 1)
    with pytest.raises(ValueError, match=r"'bogus'"):
        build_ccam_mask(8, 2, 1, mode="bogus")
    with pytest.raises(ValueError, match=r"'round'"):
        query_frame_index(8, 2, mode="round")
    with pytest.raises(ValueError, match=r"tokens_per_frame must be >= 1, got 0"):
        build_ccam_mask(8, 2, 0)


@pytest.mark.parametrize(
    "overrides, pattern",
    [
        (dict(hidden_size=15, num_heads=2), r"hidden_size=15 is not divisible by num_heads=2"),
        (dict(mask_mode="bogus"), r"mask_mode='bogus'"),
        (dict(self_attn="partial"), r"self_attn='partial'"),
        (dict(depth=0), r"depth must be a positive integer, got 0"),
        (dict(num_queries=-4), r"num_queries must be a positive integer, got -4"),
        (dict(dropout=1.0), r"dropout must be in \[0, 1\), got 1.0"),
        (dict(attention_dropout=-0.1), r"attention_dropout must be in \[0, 1\), got -0.1"),
        (dict(frame_chunk_size=0), r"frame_chunk_size must be None or a positive integer, got 0"),
        (dict(cross_attention="sparse"), r"cross_attention='sparse' is unknown"),
        (dict(query_blocks=0), r"query_blocks must be a positive integer, got 0"),
    ],
)
def test_config_errors(overrides, pattern):
    with pytest.raises(ValueError, match=pattern):
        tiny_config(**overrides)


def test_forward_errors():
    model = tiny_model().eval()
    with pytest.raises(ValueError, match=r"sum\(num_frames\)=5 .* visual_features.shape\[0\]=6"):
        model(features([6]), [2, 3])
    with pytest.raises(ValueError, match=r"num_queries=8 frames, got num_frames=\[9\]"):
        model(features([9]), [9])
    with pytest.raises(ValueError, match=r"cross_hidden_size=12\], got \(2, 3, 7\)"):
        model(torch.zeros(2, 3, 7), [2])
    with pytest.raises(ValueError, match=r"num_frames is empty"):
        model(features([1])[:0], [])
    with pytest.raises(ValueError, match=r"cross_attention must be one of .*got 'flash'"):
        model(features([2]), [2], cross_attention="flash")


def test_default_config_is_the_released_7b_projector():
    cfg = CCAMProjectorConfig()
    assert (cfg.num_queries, cfg.hidden_size, cfg.num_heads, cfg.cross_hidden_size) == (1024, 1024, 16, 1152)
    assert (cfg.intermediate_size, cfg.output_size, cfg.depth) == (4096, 3584, 1)
    assert (cfg.dropout, cfg.attention_dropout, cfg.layer_norm_eps) == (0.1, 0.1, 1e-5)
    assert (cfg.mask_mode, cfg.self_attn, cfg.model_type) == ("floor", "causal", "ccam_projector")


# ----------------------------------------------------------------------------------------------------------------
# Causality
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["floor", "ceil"])
@pytest.mark.parametrize("impl", ["dense", "blocks"])
def test_perturbing_a_frame_leaves_earlier_queries_exactly_unchanged(mode, impl):
    num_frames, t = 3, 1  # N = 8, T = 3: floor tau = 0,0,0,1,1,1,2,2; ceil tau = 0,0,1,1,1,2,2,2
    model = tiny_model(self_attn="causal", mask_mode=mode, cross_attention=impl).eval()
    x = features([num_frames])
    x_perturbed = x.clone()
    x_perturbed[t] += 3.0 * torch.randn_like(x_perturbed[t])
    with torch.no_grad():
        out, out_perturbed = model(x, [num_frames])[0], model(x_perturbed, [num_frames])[0]
    tau = query_frame_index(N_Q, num_frames, mode)
    early = tau < t
    assert early.any() and (~early).any()
    assert torch.equal(out[early], out_perturbed[early])  # bit-exact: masked keys contribute exactly 0
    for i in torch.nonzero(~early).flatten().tolist():
        assert not torch.allclose(out[i], out_perturbed[i]), f"query {i} (tau={tau[i]}) did not see frame {t}"


def test_full_self_attention_breaks_causality():
    # Same experiment with unmasked self-attention: early queries now see late frames through later queries,
    # which shows the causality test above can fail.
    model = tiny_model(self_attn="full").eval()
    x = features([4])
    x_perturbed = x.clone()
    x_perturbed[3] += 3.0
    with torch.no_grad():
        out, out_perturbed = model(x, [4])[0], model(x_perturbed, [4])[0]
    assert not torch.allclose(out[0], out_perturbed[0])


def test_no_self_attention_is_causal_and_has_no_self_attn_weights():
    model = tiny_model(self_attn="none").eval()
    assert not any("self_attn" in name for name, _ in model.named_parameters())
    x = features([4])
    x_perturbed = x.clone()
    x_perturbed[2] += 3.0
    with torch.no_grad():
        out, out_perturbed = model(x, [4])[0], model(x_perturbed, [4])[0]
    assert torch.equal(out[:4], out_perturbed[:4])  # queries 0-3 see frames 0-1 only


@pytest.mark.parametrize("impl", ["dense", "blocks"])
def test_without_causal_mask_the_output_ignores_frame_order(impl):
    # The ablation switch: no CCAM mask and unmasked query self-attention. With no temporal position embedding
    # the projector then sees a set of frames, so any permutation of them gives the same tokens; with the mask,
    # reversing the frames changes every query that sees more than one frame.
    num_frames = [5, 3]
    x = features(num_frames)
    order = torch.tensor([4, 2, 0, 3, 1, 6, 5, 7])  # permute within each video
    unmasked = tiny_model(causal_mask=False, cross_attention=impl).eval()
    masked = tiny_model(cross_attention=impl).eval()
    with torch.no_grad():
        torch.testing.assert_close(unmasked(x[order], num_frames), unmasked(x, num_frames), rtol=1e-5, atol=1e-6)
        same = torch.isclose(masked(x[order], num_frames), masked(x, num_frames), rtol=1e-5, atol=1e-6)
    assert not same.all(dim=-1)[0].any()  # video 0: frame 0 moved, so even query 0 changes


def test_causal_mask_switch_is_saved_with_the_weights(tmp_path):
    model = tiny_model(causal_mask=False).eval()
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["causal_mask"] is False
    loaded = CCAMProjector.from_pretrained(tmp_path).eval()
    assert loaded.config.causal_mask is False
    x = features([4])
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, [4]), model(x, [4]))
    with pytest.raises(ValueError, match="causal_mask must be True or False, got 'no'"):
        tiny_config(causal_mask="no")


# ----------------------------------------------------------------------------------------------------------------
# Parity with an independent reference (explicit loops / einsum, own softmax and masks, no padding)
# ----------------------------------------------------------------------------------------------------------------
def ref_allowed_frames(num_queries: int, num_frames: int, mode: str) -> list:
    """Number of frames each query sees, with exact rational arithmetic."""
    if mode == "floor":
        return [math.floor(Fraction(i * num_frames, num_queries)) + 1 for i in range(num_queries)]
    return [math.ceil(Fraction((i + 1) * num_frames, num_queries)) for i in range(num_queries)]


def ref_linear(x, sd, name):
    return torch.einsum("...i,oi->...o", x, sd[f"{name}.weight"]) + sd[f"{name}.bias"]


def ref_layer_norm(x, sd, name, eps):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * sd[f"{name}.weight"] + sd[f"{name}.bias"]


def ref_attention(xq, xkv, sd, name, heads, allowed):
    """xq [q, e], xkv [k, c], allowed Bool[q, k] or None -> [q, e]."""
    q = ref_linear(xq, sd, f"{name}.q_proj")
    k = ref_linear(xkv, sd, f"{name}.k_proj")
    v = ref_linear(xkv, sd, f"{name}.v_proj")
    d = q.shape[-1] // heads
    q, k, v = (t.reshape(t.shape[0], heads, d) for t in (q, k, v))
    scores = torch.einsum("qhd,khd->hqk", q, k) / math.sqrt(d)
    if allowed is not None:
        scores = torch.where(allowed[None], scores, torch.tensor(float("-inf")))
    scores = scores - scores.max(-1, keepdim=True).values
    weights = scores.exp()
    probs = weights / weights.sum(-1, keepdim=True)
    out = torch.einsum("hqk,khd->qhd", probs, v).reshape(xq.shape[0], heads * d)
    return ref_linear(out, sd, f"{name}.o_proj")


def ref_projector(model: CCAMProjector, visual_features, num_frames):
    cfg, sd = model.config, {k: v.detach() for k, v in model.state_dict().items()}
    outputs, offset = [], 0
    for t in num_frames:
        kv = visual_features[offset : offset + t].reshape(t * P, -1)  # frame-major keys
        offset += t
        seen = ref_allowed_frames(cfg.num_queries, t, cfg.mask_mode) if cfg.causal_mask else [t] * cfg.num_queries
        cross = torch.zeros(cfg.num_queries, t * P, dtype=torch.bool)
        selfm = torch.zeros(cfg.num_queries, cfg.num_queries, dtype=torch.bool)
        for i in range(cfg.num_queries):
            for key in range(t * P):
                cross[i, key] = key // P < seen[i]
            for j in range(cfg.num_queries):
                selfm[i, j] = seen[j] <= seen[i]
        h = sd["queries"].clone()
        for blk in range(cfg.depth):
            pre = f"blocks.{blk}"
            if cfg.self_attn != "none":
                x = ref_layer_norm(h, sd, f"{pre}.self_attn_norm", cfg.layer_norm_eps)
                allowed = selfm if cfg.self_attn == "causal" and cfg.causal_mask else None
                h = h + ref_attention(x, x, sd, f"{pre}.self_attn", cfg.num_heads, allowed)
            x = ref_layer_norm(h, sd, f"{pre}.cross_attn_norm", cfg.layer_norm_eps)
            h = h + ref_attention(x, kv, sd, f"{pre}.cross_attn", cfg.num_heads, cross)
            x = ref_layer_norm(h, sd, f"{pre}.mlp_norm", cfg.layer_norm_eps)
            gate, up = ref_linear(x, sd, f"{pre}.mlp.gate_proj"), ref_linear(x, sd, f"{pre}.mlp.up_proj")
            h = h + ref_linear(gate * torch.sigmoid(gate) * up, sd, f"{pre}.mlp.down_proj")
        h = ref_layer_norm(h, sd, "norm", cfg.layer_norm_eps)
        outputs.append(ref_linear(h, sd, "output_proj"))
    return torch.stack(outputs)


@pytest.mark.parametrize(
    "overrides",
    [
        dict(),
        dict(mask_mode="ceil"),
        dict(self_attn="full", depth=1),
        dict(self_attn="none", depth=1),
        dict(cross_attention="dense"),
        dict(cross_attention="blocks", query_blocks=3, mask_mode="ceil"),
        dict(causal_mask=False),
        dict(causal_mask=False, cross_attention="blocks"),
    ],
    ids=["floor-causal", "ceil-causal", "full", "none", "dense", "blocks3-ceil", "no-mask", "no-mask-blocks"],
)
def test_parity_with_reference(overrides):
    model = tiny_model(**overrides).eval()
    num_frames = [3, 1, 5, 8]
    x = features(num_frames)
    with torch.no_grad():
        out = model(x, num_frames)
    assert out.shape == (4, N_Q, OUT)
    torch.testing.assert_close(out, ref_projector(model, x, num_frames), rtol=1e-5, atol=1e-5)


def _output_and_grads(model, x, num_frames, **kwargs):
    x = x.clone().requires_grad_(True)
    model.zero_grad(set_to_none=True)
    out = model(x, num_frames, **kwargs)
    out.square().sum().backward()
    return [out.detach(), x.grad] + [p.grad for p in model.parameters()]


@pytest.mark.parametrize("num_frames", [[8, 8], [5, 2, 8], [1, 3], [1]], ids=["uniform", "mixed", "padded", "image"])
@pytest.mark.parametrize("overrides", [dict(), dict(mask_mode="ceil", query_blocks=3), dict(query_blocks=64),
                                       dict(causal_mask=False), dict(self_attn="none")],
                         ids=["floor", "ceil-3blocks", "64blocks", "no-mask", "no-self-attn"])  # fmt: skip
def test_block_sparse_equals_dense_output_and_gradients(num_frames, overrides):
    model = tiny_model(attention_dropout=0.0, dropout=0.0, **overrides)
    x = features(num_frames)
    dense = _output_and_grads(model, x, num_frames, cross_attention="dense")
    blocks = _output_and_grads(model, x, num_frames, cross_attention="blocks")
    for a, b in zip(blocks, dense):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_block_plan_skips_invisible_frames_and_masks_only_staircases():
    from videoccam.model.hf.ccam_projector import _query_block_plan

    tau = query_frame_index(8, 4)[None]  # 0,0,1,1,2,2,3,3
    assert _query_block_plan(tau, 2) == [(0, 4, 2, True), (4, 8, 4, True)]
    assert _query_block_plan(tau, 4) == [(0, 2, 1, False), (2, 4, 2, False), (4, 6, 3, False), (6, 8, 4, False)]
    assert _query_block_plan(tau, 100) == _query_block_plan(tau, 4)  # never finer than the frame groups
    assert _query_block_plan(torch.zeros(1, 8, dtype=torch.long), 4) == [(0, 8, 1, False)]  # an image
    mixed = torch.stack([query_frame_index(8, 4), query_frame_index(8, 2)])  # video 1 has 2 frames: masked
    assert _query_block_plan(mixed, 4) == [(0, 2, 1, False), (2, 4, 2, True), (4, 6, 3, True), (6, 8, 4, True)]


@pytest.mark.parametrize("chunks", [[1] * 8, [3, 5], [8]], ids=["1-frame", "3+5", "one"])
@pytest.mark.parametrize("overrides", [dict(), dict(mask_mode="ceil", depth=1), dict(causal_mask=False)],
                         ids=["floor-depth2", "ceil-depth1", "no-mask"])  # fmt: skip
def test_streaming_equals_dense(chunks, overrides):
    model = tiny_model(**overrides).eval()
    x = features([8])
    with torch.no_grad():
        expected = model(x, [8], cross_attention="dense")
        parts = lambda: x.split(chunks)  # noqa: E731  (every block scans the frames again)
        torch.testing.assert_close(model.forward_stream(parts, 8), expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(model.forward_stream(x, 8), expected, rtol=1e-5, atol=1e-5)
        if model.config.depth == 1:
            torch.testing.assert_close(model.forward_stream(iter(parts()), 8), expected, rtol=1e-5, atol=1e-5)


def test_streaming_errors():
    model = tiny_model().eval()  # depth 2
    x = features([4])
    with pytest.raises(RuntimeError, match="torch.no_grad"):
        model.forward_stream(x, 4)
    with torch.no_grad():
        with pytest.raises(ValueError, match="needs a callable"):
            model.forward_stream(iter(x.split(2)), 4)
        with pytest.raises(ValueError, match="held 4 frames but num_frames=5"):
            model.forward_stream(x, 5)


# ----------------------------------------------------------------------------------------------------------------
# Shapes and padding
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("impl", ["dense", "blocks"])
def test_output_shape_independent_of_frames_and_padding_does_not_leak(impl):
    model = tiny_model(cross_attention=impl).eval()
    lengths = [1, 5, 8]
    singles = []
    with torch.no_grad():
        for i, t in enumerate(lengths):
            out = model(features([t], seed=10 + i), [t])
            assert out.shape == (1, N_Q, OUT)
            singles.append(out[0])
        batch_x = torch.cat([features([t], seed=10 + i) for i, t in enumerate(lengths)])
        batched = model(batch_x, torch.tensor(lengths))
    assert batched.shape == (3, N_Q, OUT)
    for i in range(3):
        torch.testing.assert_close(batched[i], singles[i], rtol=1e-5, atol=1e-6)


def test_uniform_batch_equals_single_videos():
    model = tiny_model().eval()
    x = features([4, 4])
    with torch.no_grad():
        batched = model(x, [4, 4])
        first, second = model(x[:4], [4]), model(x[4:], [4])
    torch.testing.assert_close(batched, torch.cat([first, second]), rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------------------------------------------
# save_pretrained -> AutoModel(trust_remote_code=True) in a fresh process without our package
# ----------------------------------------------------------------------------------------------------------------
def test_save_and_load_with_trust_remote_code_in_isolation(tmp_path):
    model = tiny_model(mask_mode="ceil").eval()
    num_frames = [3, 6]
    x = features(num_frames)
    with torch.no_grad():
        expected = model(x, num_frames)
    model.save_pretrained(tmp_path / "projector")
    saved = json.loads((tmp_path / "projector" / "config.json").read_text())
    assert saved["auto_map"] == {
        "AutoConfig": "ccam_projector.CCAMProjectorConfig",
        "AutoModel": "ccam_projector.CCAMProjector",
    }
    assert saved["model_type"] == "ccam_projector" and saved["mask_mode"] == "ceil"
    assert (tmp_path / "projector" / "ccam_projector.py").is_file()
    torch.save({"x": x, "num_frames": num_frames, "expected": expected}, tmp_path / "io.pt")

    # Static check: the copied file imports only torch, transformers and the standard library.
    tree = ast.parse((tmp_path / "projector" / "ccam_projector.py").read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"relative import in the saved projector file: line {node.lineno}"
            roots.add(node.module.split(".")[0])
    assert roots - {"torch", "transformers"} <= set(sys.stdlib_module_names), roots

    # Dynamic check in a fresh interpreter where our package cannot be imported at all. `-S` skips site-packages'
    # .pth files (this environment has an editable install of videoccam and a .pth that imports
    # videoccam.xtuner_compat at start-up); the parent's sys.path minus every entry holding a `videoccam`
    # package then gives it torch and transformers but not videoccam.
    child_path = isolated_python_path()
    script = textwrap.dedent(
        """
        import importlib.util
        import sys
        sys.path.extend(PATHS)
        assert importlib.util.find_spec("videoccam") is None, "videoccam is importable; the test is not isolated"
        import torch
        from transformers import AutoModel
        model = AutoModel.from_pretrained("projector", trust_remote_code=True).eval()
        io = torch.load("io.pt")
        with torch.no_grad():
            out = model(io["x"], io["num_frames"])
        torch.testing.assert_close(out, io["expected"], rtol=1e-6, atol=1e-6)
        assert model.config.mask_mode == "ceil", model.config.mask_mode
        assert not [m for m in sys.modules if m.split(".")[0] == "videoccam"], "videoccam was imported"
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        print("OK", type(model).__module__)
        """
    ).replace("PATHS", repr(child_path))
    result = subprocess.run(
        [sys.executable, "-S", "-c", script], cwd=tmp_path, env=isolated_env(tmp_path), capture_output=True,
        text=True, timeout=120,
    )
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert "OK transformers_modules" in result.stdout


# ----------------------------------------------------------------------------------------------------------------
# Gradients
# ----------------------------------------------------------------------------------------------------------------
def _loss_and_grads(model, x, num_frames, seed=123):
    torch.manual_seed(seed)  # same dropout masks in both runs
    model.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_(True)
    model(x, num_frames).square().mean().backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    return grads, x.grad.clone()


def test_gradients_reach_queries_and_all_weights():
    model = tiny_model().train()
    grads, x_grad = _loss_and_grads(model, features([2, 5]), [2, 5])
    assert set(grads) == {name for name, _ in model.named_parameters()}
    for name, grad in grads.items():
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0, name
    assert x_grad.abs().sum() > 0


@pytest.mark.parametrize("use_reentrant", [True, False])
def test_gradient_checkpointing_gives_same_grads(use_reentrant):
    model = tiny_model().train()  # dropout on: checkpointing must replay the same dropout masks
    num_frames = [2, 5]
    x = features(num_frames)
    grads_ref, x_grad_ref = _loss_and_grads(model, x, num_frames)

    calls = []
    for block in model.blocks:
        block.register_forward_pre_hook(lambda *_: calls.append(1))
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": use_reentrant})
    assert model.gradient_checkpointing
    grads_ckpt, x_grad_ckpt = _loss_and_grads(model, x, num_frames)
    assert len(calls) == 2 * len(model.blocks)  # every block ran again during backward
    for name in grads_ref:
        torch.testing.assert_close(grads_ckpt[name], grads_ref[name], rtol=1e-5, atol=1e-7, msg=name)
    torch.testing.assert_close(x_grad_ckpt, x_grad_ref, rtol=1e-5, atol=1e-7)
