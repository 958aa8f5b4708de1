"""videoccam/synthetic/replica_code/modeling_ccam_projector.py: an independent CCAM projector, called as upstream
calls the released one, with its own parameter names; causal over frames."""

import torch

from videoccam.synthetic.released_replicas import PROJECTOR_CONFIG
from videoccam.synthetic.replica_code.configuration_ccam_projector import CCAMConfig
from videoccam.synthetic.replica_code.modeling_ccam_projector import CCAMModel


def _projector() -> CCAMModel:
    torch.manual_seed(0)
    return CCAMModel(CCAMConfig(**PROJECTOR_CONFIG)).eval()


def test_call_and_parameter_names():
    projector = _projector()
    out = projector(torch.randn(5, 16, 32), [3, 2])
    assert out.shape == (2, 16, 64)
    names = set(projector.state_dict())
    assert "query" in names and "cross_attention.wkv.weight" in names and "head.weight" in names
    assert not {"queries", "output_proj.weight"} & names  # the project's names


def test_query_i_sees_frames_up_to_i_t_over_n():
    projector = _projector()
    frames = torch.randn(4, 16, 32)
    changed = frames.clone()
    changed[3] = torch.randn(16, 32)  # the last frame: only queries with (i * 4) // 16 >= 3, i.e. i >= 12, see it
    with torch.no_grad():
        a, b = projector(frames, [4])[0], projector(changed, [4])[0]
    assert torch.equal(a[:12], b[:12]) and not torch.allclose(a[12:], b[12:])


def test_the_non_casting_variant_takes_features_in_their_own_dtype():
    torch.manual_seed(0)
    casting = CCAMModel(CCAMConfig(**PROJECTOR_CONFIG)).eval()
    plain = CCAMModel(CCAMConfig(**PROJECTOR_CONFIG, cast_inputs=False)).eval()
    plain.load_state_dict(casting.state_dict())
    features = torch.randn(2, 16, 32)
    with torch.no_grad():
        assert casting(features.bfloat16(), [2]).dtype == torch.float32  # cast to its fp32 weights
        torch.testing.assert_close(plain(features, [2]), casting(features, [2]), rtol=0, atol=0)
        try:
            plain(features.bfloat16(), [2])
        except RuntimeError as e:  # bf16 features against fp32 weights, as a released projector may fail
            assert "dtype" in str(e) or "scalar type" in str(e)
        else:
            raise AssertionError("bf16 features reached the fp32 non-casting projector without an error")
