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
